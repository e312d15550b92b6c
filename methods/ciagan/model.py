"""CIAGAN networks: generator, critic (discriminator), identity network.

Layouts follow the paper's supplementary Tables 5-10 and, where the two differ, the official
code (dvl-tum/ciagan `arch_unet_flex.py`, `arch_resnet_siam.py`), which produced the results:

- convolutions in the residual blocks, the bottleneck and the identity branch are reflection
  padded and spectrally normalised (official code; the paper does not say);
- down blocks are pre-activation: ReLU, 3x3, ReLU, 3x3, avg-pool, plus a 1x1 + avg-pool
  shortcut; the generator puts an InstanceNorm after each down and up block (Table 8/9);
- the bottleneck fuse is 3x3 conv + InstanceNorm (official; Table 5 says conv + ReLU);
- the critic takes the composite concatenated with the landmark image (6 channels, official;
  Table 6 says 3) through down blocks 64-128-256-512-512 (official; Table 6 says 32...512),
  then FC 1024 and FC 1, each followed by LeakyReLU 0.2 as in Table 6 and the code;
- the identity network is a CIFAR-style ResNet-18 (3x3 stem, no max-pool, BatchNorm), then
  FC 1024 + ReLU and a linear embedding (official: the embedding size = number of classes).

Sizes are constructor arguments so tests can build tiny models; the defaults are the paper's.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class SNConv(nn.Module):
    """Reflection padding + spectrally normalised convolution (the official `ConvLayer`)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.pad = kernel // 2
        conv = nn.Conv2d(cin, cout, kernel)
        # official init (xavier normal, bias 0.01); spectral norm fixes the scale anyway
        nn.init.xavier_normal_(conv.weight)
        nn.init.constant_(conv.bias, 0.01)
        self.conv = spectral_norm(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return self.conv(x)


class ResBlockDown(nn.Module):
    """Table 8: [ReLU, 3x3, ReLU, 3x3, avgpool] + [1x1, avgpool]; halves the resolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = SNConv(cin, cout)
        self.conv2 = SNConv(cout, cout)
        self.skip = SNConv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(F.relu(x))))
        return F.avg_pool2d(out, 2) + F.avg_pool2d(self.skip(x), 2)


class ResBlockUp(nn.Module):
    """Table 9: [IN, ReLU, up x2, 3x3, IN, ReLU, 3x3] + [up x2, 1x1]; doubles the resolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = nn.InstanceNorm2d(cin, affine=True)
        self.conv1 = SNConv(cin, cout)
        self.norm2 = nn.InstanceNorm2d(cout, affine=True)
        self.conv2 = SNConv(cout, cout)
        self.skip = SNConv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(F.relu(self.norm1(x)), scale_factor=2.0, mode="nearest")
        out = self.conv2(F.relu(self.norm2(self.conv1(out))))
        return out + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Table 10: 3x3, IN, ReLU, 3x3, IN, plus the input."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = SNConv(ch, ch)
        self.norm1 = nn.InstanceNorm2d(ch, affine=True)
        self.conv2 = SNConv(ch, ch)
        self.norm2 = nn.InstanceNorm2d(ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(out))


def _levels(img_size: int) -> int:
    """Number of x2 resolution steps between img_size and the 4x4 bottleneck."""
    n = round(math.log2(img_size / 4))
    if img_size < 8 or 4 * 2**n != img_size:
        raise ValueError(f"image size must be 4 * 2^k (k >= 1), got {img_size}")
    return n


class IdentityEncoder(nn.Module):
    """Table 7: one-hot -> 7 x (FC + LeakyReLU) -> reshape (width, 4, 4) -> 3 x (3x3 conv +
    LeakyReLU + IN) to `out_ch` channels at 4 x 4."""

    def __init__(self, num_identities: int, width: int, out_ch: int) -> None:
        super().__init__()
        hidden = [width * 8] * 4 + [width * 16] * 3  # 256 x 4, 512 x 3 at width 32
        layers: list[nn.Module] = []
        cin = num_identities
        for h in hidden:
            layers += [nn.Linear(cin, h), nn.LeakyReLU(0.2)]
            cin = h
        self.fc = nn.Sequential(*layers)
        self.width = width
        chans = [width, out_ch // 4, out_ch // 2, out_ch]
        convs: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            convs += [SNConv(a, b), nn.LeakyReLU(0.2), nn.InstanceNorm2d(b, affine=True)]
        self.convs = nn.Sequential(*convs)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        z = self.fc(onehot).view(-1, self.width, 4, 4)
        return self.convs(z)


class Generator(nn.Module):
    """Table 5. Input: landmark image (3) + image * (1 - mask) (3) and a target identity;
    output: an RGB image (no output activation, as in the official code; the composite is
    clamped to [0, 1] only when used as an image)."""

    def __init__(
        self, num_identities: int, img_size: int = 128, width: int = 32, in_ch: int = 6
    ) -> None:
        super().__init__()
        if num_identities < 1:
            raise ValueError("num_identities must be >= 1")
        self.num_identities = num_identities
        self.img_size = img_size
        n = _levels(img_size)
        # encoder channels, e.g. 32, 64, 128, 256, 256 at width 32 and 128 x 128
        enc = [min(width * 2**i, width * 8) for i in range(n)]
        self.down = nn.ModuleList()
        self.down_norm = nn.ModuleList()
        cin = in_ch
        for c in enc:
            self.down.append(ResBlockDown(cin, c))
            self.down_norm.append(nn.InstanceNorm2d(c, affine=True))
            cin = c
        bott = enc[-1]
        self.identity = IdentityEncoder(num_identities, width, bott)
        self.fuse = nn.Sequential(SNConv(2 * bott, bott), nn.InstanceNorm2d(bott, affine=True))
        self.res = nn.Sequential(*[ResBlock(bott) for _ in range(4)])
        dec = [*enc[-2::-1], width // 2]  # 256, 128, 64, 32, 16
        self.up = nn.ModuleList()
        self.up_norm = nn.ModuleList()
        cin = bott
        for c in dec:
            self.up.append(ResBlockUp(cin, c))
            self.up_norm.append(nn.InstanceNorm2d(c, affine=True))
            cin = c
        self.out = nn.Conv2d(cin, 3, 3, padding=1)
        nn.init.xavier_normal_(self.out.weight)
        nn.init.constant_(self.out.bias, 0.01)

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        for block, norm in zip(self.down, self.down_norm, strict=True):
            x = norm(block(x))
        x = self.fuse(torch.cat([x, self.identity(onehot)], 1))
        x = self.res(x)
        for block, norm in zip(self.up, self.up_norm, strict=True):
            x = norm(block(x))
        return self.out(x)


class Critic(nn.Module):
    """Table 6 / official Discriminator: down blocks to 4 x 4, FC 1024, FC 1 (LeakyReLU after
    both). Input: image (3) + landmark image (3)."""

    def __init__(self, img_size: int = 128, width: int = 64, in_ch: int = 6) -> None:
        super().__init__()
        n = _levels(img_size)
        chans = [min(width * 2**i, width * 8) for i in range(n)]  # 64, 128, 256, 512, 512
        blocks: list[nn.Module] = []
        cin = in_ch
        for c in chans:
            blocks.append(ResBlockDown(cin, c))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(cin * 16, 1024)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x).flatten(1)
        h = F.leaky_relu(self.fc1(h), 0.2)
        return F.leaky_relu(self.fc2(h), 0.2)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class IdentityNet(nn.Module):
    """The siamese identity discriminator: CIFAR-style ResNet-18 -> FC 1024 + ReLU -> FC
    `embed_dim`. `forward` returns the raw embedding; `normalize` adds L2 normalisation times
    `scale` (used with Proxy-NCA pretraining, see train.py)."""

    def __init__(
        self, embed_dim: int, width: int = 64, normalize: bool = False, scale: float = 3.0
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.scale = scale
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        layers: list[nn.Module] = []
        cin = width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc1 = nn.Linear(cin, 1024)
        self.fc2 = nn.Linear(1024, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.stem(x))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        e = self.fc2(F.relu(self.fc1(h)))
        if self.normalize:
            e = self.scale * F.normalize(e.float(), dim=1)
        return e


def build_models(cfg: dict[str, Any], num_identities: int) -> dict[str, nn.Module]:
    """The three networks from a training config (see train.TrainConfig)."""
    return {
        "generator": Generator(num_identities, cfg["img_size"], cfg["gen_width"]),
        "critic": Critic(cfg["img_size"], cfg["critic_width"]),
        "identity": IdentityNet(
            cfg.get("embed_dim") or num_identities,
            cfg["id_width"],
            normalize=cfg["identity_pretrain"] == "pnca",
        ),
    }
