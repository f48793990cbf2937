for epoch in range(3):
	for x, y in loader:
		for p in model.parameters():
			p.grad = None
		loss_fn(model(x), y).backward()
		optimizer.step()
