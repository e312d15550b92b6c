"""CycleGAN networks (Zhu et al., ICCV 2017), written after the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), with its defaults:
`resnet_9blocks` = reflection pad + 7 x 7 conv, two stride-2 downsamplings, 9 residual blocks
at ngf x 4 channels, two transposed-conv upsamplings, 7 x 7 conv, tanh; instance norm without
affine parameters (so every conv has a bias), no dropout. Its discriminator is pix2pix's 70 x 70
PatchGAN with instance norm (`anonbench.methods.pix2pix.model.PatchDiscriminator`)."""

from __future__ import annotations

import torch
from torch import nn

from anonbench.methods.pix2pix.model import PatchDiscriminator, init_weights, norm_layer


class ResnetBlock(nn.Module):
    """x + (pad, conv 3 x 3, norm, ReLU, pad, conv 3 x 3, norm)(x)."""

    def __init__(self, dim: int, norm: str = "instance") -> None:
        super().__init__()
        bias = norm == "instance"
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            norm_layer(norm, dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            norm_layer(norm, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """The reference ResNet generator (n_blocks 9 = `resnet_9blocks`)."""

    def __init__(
        self, in_ch: int, out_ch: int = 3, ngf: int = 64, n_blocks: int = 9, norm: str = "instance"
    ) -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, c * 2, 3, 2, 1, bias=bias), norm_layer(norm, c * 2)]
            layers.append(nn.ReLU(True))
        layers += [ResnetBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers.append(nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias))
            layers += [norm_layer(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.in_ch, self.out_ch = in_ch, out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def resnet_9blocks(in_ch: int, out_ch: int = 3, ngf: int = 64) -> ResnetGenerator:
    """CycleGAN's generator, N(0, 0.02)-initialised."""
    return init_weights(ResnetGenerator(in_ch, out_ch, ngf, 9, "instance"))  # type: ignore[return-value]


def patch_discriminator(in_ch: int = 3, ndf: int = 64) -> PatchDiscriminator:
    """CycleGAN's 70 x 70 PatchGAN (instance norm), N(0, 0.02)-initialised."""
    return init_weights(PatchDiscriminator(in_ch, ndf, 3, "instance"))  # type: ignore[return-value]
