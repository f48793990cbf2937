def train_gan(netD, netG, optD, optG, loader, epochs):
    optG.zero_grad()
    for epoch in range(epochs):
        for real in loader:
            errD = netD(real).mean() - netD(netG(noise())).mean()
            errD.backward()
            optD.step()
            optD.zero_grad()

            errG = -netD(netG(noise())).mean()
            errG.backward()
            optG.step()
