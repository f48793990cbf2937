optimizer = torch.optim.Adam(model.parameters())
for x, y in loader:
  loss = loss_fn(model(x), y)
  loss.backward()
  optimizer.step()
  # next batch
