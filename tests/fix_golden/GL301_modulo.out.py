accum_steps = 4
for i, (x, y) in enumerate(loader):
    loss = loss_fn(model(x), y)
    (loss / accum_steps).backward()  # accumulate
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
    print(loss.item())
