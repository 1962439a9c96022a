"""zoo.py - models written the way tutorials and the popular GAN/VAE
collections write them (small sizes, random weights): the exporter must
take them as they are."""
import torch
import torch.nn.functional as F
from torch import nn


def randomize(module, seed=0):
    """Non-trivial norm statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)) and m.running_mean is not None:
            n = m.running_mean.numel()
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)) and \
                getattr(m, "weight", None) is not None:
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return module.eval()


class ConvVAE(nn.Module):
    """The PyTorch examples' VAE with convolutions: encode() returns
    (mu, logvar), decode() ends in a sigmoid; forward() samples, so it is
    the two methods that get exported."""

    def __init__(self, z_dim=8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 4, 2, 1)
        self.conv2 = nn.Conv2d(8, 16, 4, 2, 1)
        self.fc1 = nn.Linear(16 * 7 * 7, 64)
        self.fc21 = nn.Linear(64, z_dim)
        self.fc22 = nn.Linear(64, z_dim)
        self.fc3 = nn.Linear(z_dim, 64)
        self.fc4 = nn.Linear(64, 16 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(16, 8, 4, 2, 1)
        self.deconv2 = nn.ConvTranspose2d(8, 1, 4, 2, 1)

    def encode(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h1 = F.relu(self.fc1(h.view(h.size(0), -1)))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        h = F.relu(self.fc4(h3)).view(-1, 16, 7, 7)
        h = F.relu(self.deconv1(h))
        return torch.sigmoid(self.deconv2(h))

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def upsampling_blocks(channels):
    """PyTorch-GAN's generator body (its ACGAN and InfoGAN share it): from
    (32, s, s) to (channels, 4s, 4s) by two rounds of Upsample, Conv2d,
    BatchNorm2d (eps 0.8) and LeakyReLU, then a Conv2d and tanh."""
    return nn.Sequential(
        nn.BatchNorm2d(32),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(32, 32, 3, stride=1, padding=1),
        nn.BatchNorm2d(32, 0.8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(32, 16, 3, stride=1, padding=1),
        nn.BatchNorm2d(16, 0.8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(16, channels, 3, stride=1, padding=1),
        nn.Tanh(),
    )


class CondDCGANGenerator(nn.Module):
    """PyTorch-GAN's ACGAN generator: the label's embedding multiplies the
    noise; Upsample + Conv2d instead of transposed convolutions."""

    def __init__(self, n_classes=10, latent_dim=16, img_size=16, channels=1):
        super().__init__()
        self.label_emb = nn.Embedding(n_classes, latent_dim)
        self.init_size = img_size // 4
        self.l1 = nn.Sequential(nn.Linear(latent_dim, 32 * self.init_size ** 2))
        self.conv_blocks = upsampling_blocks(channels)

    def forward(self, noise, labels):
        gen_input = torch.mul(self.label_emb(labels), noise)
        out = self.l1(gen_input)
        out = out.view(out.shape[0], 32, self.init_size, self.init_size)
        return self.conv_blocks(out)


class DCGANDiscriminator(nn.Module):
    def __init__(self, channels=1, img_size=16):
        super().__init__()

        def block(i, o, bn=True):
            layers = [nn.Conv2d(i, o, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(0.25)]
            if bn:
                layers.append(nn.BatchNorm2d(o, 0.8))
            return layers
        self.model = nn.Sequential(*block(channels, 8, bn=False), *block(8, 16))
        self.adv_layer = nn.Linear(16 * (img_size // 4) ** 2, 1)

    def forward(self, img):
        out = self.model(img)
        return self.adv_layer(out.view(out.shape[0], -1))


class InfoGANGenerator(nn.Module):
    """PyTorch-GAN's InfoGAN generator: forward(noise, labels, code) with a
    one-hot label and continuous codes."""

    def __init__(self, latent_dim=12, n_classes=10, code_dim=2, img_size=16, channels=1):
        super().__init__()
        input_dim = latent_dim + n_classes + code_dim
        self.init_size = img_size // 4
        self.l1 = nn.Sequential(nn.Linear(input_dim, 32 * self.init_size ** 2))
        self.conv_blocks = upsampling_blocks(channels)

    def forward(self, noise, labels, code):
        gen_input = torch.cat((noise, labels, code), -1)
        out = self.l1(gen_input)
        out = out.view(out.shape[0], 32, self.init_size, self.init_size)
        return self.conv_blocks(out)


class ResidualBlock(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_features, in_features, 3),
            nn.InstanceNorm2d(in_features),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_features, in_features, 3),
            nn.InstanceNorm2d(in_features),
        )

    def forward(self, x):
        return x + self.block(x)


class GeneratorResNet(nn.Module):
    """PyTorch-GAN's CycleGAN generator, small."""

    def __init__(self, channels=3, num_residual_blocks=2, features=8):
        super().__init__()
        model = [nn.ReflectionPad2d(channels), nn.Conv2d(channels, features, 7), nn.InstanceNorm2d(features),
                 nn.ReLU(inplace=True)]
        in_features = features
        for _ in range(2):
            out_features = in_features * 2
            model += [nn.Conv2d(in_features, out_features, 3, stride=2, padding=1),
                      nn.InstanceNorm2d(out_features, affine=True), nn.ReLU(inplace=True)]
            in_features = out_features
        for _ in range(num_residual_blocks):
            model += [ResidualBlock(out_features)]
        for _ in range(2):
            out_features //= 2
            model += [nn.Upsample(scale_factor=2), nn.Conv2d(in_features, out_features, 3, stride=1, padding=1),
                      nn.InstanceNorm2d(out_features, track_running_stats=True), nn.ReLU(inplace=True)]
            in_features = out_features
        model += [nn.ReflectionPad2d(channels), nn.Conv2d(out_features, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class MaskedLinear(nn.Linear):
    """Karpathy's pytorch-made: a Linear whose forward multiplies the weight
    by a mask buffer."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features))

    def set_mask(self, mask):
        self.mask.data.copy_(mask.T)

    def forward(self, input):
        return F.linear(input, self.mask * self.weight, self.bias)


class MADE(nn.Module):
    def __init__(self, nin=16, hidden_sizes=(32, 32), nout=16, seed=0):
        super().__init__()
        self.nin, self.nout, self.hidden_sizes = nin, nout, list(hidden_sizes)
        self.net = []
        hs = [nin] + self.hidden_sizes + [nout]
        for h0, h1 in zip(hs, hs[1:]):
            self.net.extend([MaskedLinear(h0, h1), nn.ReLU()])
        self.net.pop()
        self.net = nn.Sequential(*self.net)
        g = torch.Generator().manual_seed(seed)
        L = len(self.hidden_sizes)
        m = {-1: torch.arange(nin)}
        for l in range(L):
            m[l] = torch.randint(int(m[l - 1].min()), nin - 1, (self.hidden_sizes[l],), generator=g)
        masks = [m[l - 1][:, None] <= m[l][None, :] for l in range(L)]
        masks.append(m[L - 1][:, None] < m[-1][None, :])
        layers = [l for l in self.net.modules() if isinstance(l, MaskedLinear)]
        for l, mk in zip(layers, masks):
            l.set_mask(mk.float())

    def forward(self, x):
        return self.net(x.view(x.size(0), -1))


class ExamplesDCGANGenerator(nn.Module):
    """pytorch/examples' DCGAN generator: z arrives as [B, nz, 1, 1], and
    forward() asks whether the input is on the GPU."""

    def __init__(self, nz=16, ngf=8, nc=3, ngpu=1):
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        if input.is_cuda and self.ngpu > 1:
            output = nn.parallel.data_parallel(self.main, input, range(self.ngpu))
        else:
            output = self.main(input)
        return output


class ExamplesDCGANDiscriminator(nn.Module):
    def __init__(self, ndf=8, nc=3, ngpu=1):
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)
