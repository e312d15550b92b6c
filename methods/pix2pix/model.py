"""pix2pix networks (Isola et al., CVPR 2017), written after the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), with its defaults:

- `UnetGenerator`: `unet_128` = 7 downsamplings (128 px -> 1 x 1), ngf 64, batch norm (no conv
  bias before a norm), dropout 0.5 in the num_downs - 5 = 2 levels at ngf x 8 just outside the
  innermost one, tanh output in [-1, 1];
- `PatchDiscriminator`: the 70 x 70 PatchGAN, n_layers 3, ndf 64, LeakyReLU 0.2, batch norm
  (pix2pix) or instance norm without affine parameters (CycleGAN);
- `init_weights`: N(0, 0.02) for conv weights, N(1, 0.02) for batch-norm scales, zero biases.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "instance")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The reference's norm layers: batch norm with affine parameters and running statistics;
    instance norm with neither."""
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The reference's `normal` init: conv / linear weights N(0, gain), their biases 0; batch
    norm scales N(1, gain), shifts 0. Returns net."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


class UnetBlock(nn.Module):
    """One U-Net level: down (conv 4/2/1) -> inner levels -> up (transposed conv 4/2/1), its
    output concatenated with its input (skip connection), except at the outermost level."""

    def __init__(
        self,
        outer: int,
        inner: int,
        in_ch: int | None = None,
        sub: nn.Module | None = None,
        outermost: bool = False,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"  # a batch norm's shift makes a conv bias redundant
        in_ch = outer if in_ch is None else in_ch
        down_conv = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=bias)
        layers: list[nn.Module]
        if outermost:
            assert sub is not None
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            layers = [down_conv, sub, nn.ReLU(True), up, nn.Tanh()]
        elif sub is None:  # innermost: no norm at the 1 x 1 bottleneck
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up]
            layers.append(norm_layer(norm, outer))
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, norm_layer(norm, inner), sub]
            layers += [nn.ReLU(True), up, norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The reference U-Net generator; num_downs 7 is `unet_128` (8 is `unet_256`)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int = 3,
        num_downs: int = 7,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = True,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"a U-Net needs at least 5 downsamplings, got {num_downs}")
        block = UnetBlock(ngf * 8, ngf * 8, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, dropout=dropout)
        block = UnetBlock(ngf * 4, ngf * 8, sub=block, norm=norm)
        block = UnetBlock(ngf * 2, ngf * 4, sub=block, norm=norm)
        block = UnetBlock(ngf, ngf * 2, sub=block, norm=norm)
        self.model = UnetBlock(out_ch, ngf, in_ch=in_ch, sub=block, outermost=True, norm=norm)
        self.in_ch, self.out_ch, self.num_downs = in_ch, out_ch, num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """The reference PatchGAN (`basic` = n_layers 3: a 70 x 70 receptive field): one logit per
    patch (14 x 14 at 128 px). pix2pix feeds it input ⊕ output."""

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias),
                norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def unet_128(in_ch: int, out_ch: int = 3, ngf: int = 64) -> UnetGenerator:
    """pix2pix's generator for 128 px, N(0, 0.02)-initialised."""
    g = UnetGenerator(in_ch, out_ch, 7, ngf, "batch", True)
    init_weights(g)
    return g


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
