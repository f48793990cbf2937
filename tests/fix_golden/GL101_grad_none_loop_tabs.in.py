for epoch in range(3):
	for p in model.parameters():
		p.grad = None
	for x, y in loader:
		loss_fn(model(x), y).backward()
		optimizer.step()
