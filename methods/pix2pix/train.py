"""pix2pix training (Isola et al. 2017) on the GAN core, after the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, models/pix2pix_model.py): per step the discriminator
is updated on input ⊕ fake (label 0) and input ⊕ real (label 1), loss halved, then the
generator on GAN (label 1) + lambda_l1 x L1(fake, real). Vanilla GAN loss = BCE on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anonbench.methods import baseline_train
from anonbench.methods.baseline_train import BaselineTrainer
from anonbench.methods.gan_train import set_grad
from anonbench.methods.landmark_data import TrainData
from anonbench.methods.pix2pix.anonymizer import FAMILY as NAME
from anonbench.methods.pix2pix.anonymizer import generator
from anonbench.methods.pix2pix.model import PatchDiscriminator, init_weights
from anonbench.methods.pix2pix.options import Pix2PixConfig

COMPUTED = ("d_real", "d_fake", "g_gan", "g_l1")
LOSS_COLUMNS = ["step", "epoch", *COMPUTED, "lr", "seconds"]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class Trainer(BaselineTrainer):
    family = NAME
    computed = COMPUTED
    loss_columns = LOSS_COLUMNS
    norm = "batch"
    net_g = "unet_128"

    def __init__(self, cfg: Pix2PixConfig, data: TrainData, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.cfg: Pix2PixConfig = cfg
        torch.manual_seed(cfg.seed)  # weight init
        cl = self.memory_format
        self.G = init_weights(generator(self.in_ch, 3, cfg.ngf, self.norm)).to(
            device, memory_format=cl
        )
        d = PatchDiscriminator(self.in_ch + 3, cfg.ndf, 3, self.norm)
        self.D = init_weights(d).to(device, memory_format=cl)
        self.opt_G = self.adam(self.G.parameters(), cfg.lr)
        self.opt_D = self.adam(self.D.parameters(), cfg.lr)
        self.nets = {"generator": self.G, "discriminator": self.D}
        self.optimizers = {"generator": self.opt_G, "discriminator": self.opt_D}

    def draw(self) -> dict[str, torch.Tensor]:
        return self.draw_views(self.cfg.batch_size)

    def compute(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b = self.inputs(self.views_at(d["idx"], d["box"]))
        with self.autocast():
            fake = self.G(a).float()
        # discriminator: input ⊕ fake -> 0, input ⊕ real -> 1
        set_grad(self.D, True)
        with self.autocast():
            pred_fake = self.D(torch.cat([a, fake.detach()], 1)).float()
            pred_real = self.D(torch.cat([a, b], 1)).float()
        d_fake, d_real = _bce(pred_fake, 0.0), _bce(pred_real, 1.0)
        self.opt_D.zero_grad(set_to_none=True)
        (0.5 * (d_fake + d_real)).backward()
        self.opt_D.step()
        # generator: fool the discriminator, stay close to the real face
        set_grad(self.D, False)
        with self.autocast():
            pred = self.D(torch.cat([a, fake], 1)).float()
        g_gan = _bce(pred, 1.0)
        g_l1 = F.l1_loss(fake, b)
        self.opt_G.zero_grad(set_to_none=True)
        (g_gan + self.cfg.lambda_l1 * g_l1).backward()
        self.opt_G.step()
        return torch.stack([d_real, d_fake, g_gan, g_l1]).detach().float()

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        return {"D": f"{row['d_real'] + row['d_fake']:.3f}", "L1": f"{row['g_l1']:.3f}"}


FAMILY = baseline_train.family(NAME, Trainer)
