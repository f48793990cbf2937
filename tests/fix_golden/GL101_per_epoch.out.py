for epoch in range(epochs):
    # one clear per epoch: the bug
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)  # reset
        # forward
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    print(epoch)
