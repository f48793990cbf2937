for epoch in range(epochs):
    # one clear per epoch: the bug
    optimizer.zero_grad(set_to_none=True)  # reset
    for x, y in loader:
        # forward
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    print(epoch)
