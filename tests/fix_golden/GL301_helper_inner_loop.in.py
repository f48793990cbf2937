def train(model, loader, optimizer, accum_steps):
    data_iter = iter(loader)
    for update in range(100):
        optimizer.zero_grad()
        for _ in range(accum_steps):
            x, y = next(data_iter)
            loss = loss_fn(model(x), y)
            torch.autograd.backward(loss)
        optimizer.step()
