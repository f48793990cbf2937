loader = make_loader()
for epoch in range(10):
    optimizer.zero_grad()
    for x, y in loader:
        (loss_fn(model(x), y) / len(loader)).backward()
    optimizer.step()
