optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5)


def closure():
    """One evaluation of the loss, for LBFGS's line search."""
    loss = loss_fn(model(inputs), targets)
    loss.backward()
    return loss


for epoch in range(4):
    optimizer.step(closure)
