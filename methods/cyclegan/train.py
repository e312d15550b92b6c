"""CycleGAN training (Zhu et al. 2017) on the GAN core, after the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, models/cycle_gan_model.py). Domain A: the landmark
drawing (landmarks variant, 3 channels) or landmarks ⊕ masked face (masked, 6); domain B:
faces. G_A: A -> B (the generator the method runs), G_B: B -> A; D_A judges faces, D_B judges
domain A. Unpaired, as in the reference: A and B images are drawn independently.

Per step: the generators together (LSGAN to fool both discriminators, cycle L1 both ways
x lambda_cycle, identity L1 x lambda_identity x lambda_cycle where channels match), then both
discriminators on real against a fake from the image pool (LSGAN, halved)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F

from anonbench.methods import baseline_train
from anonbench.methods.baseline_train import BaselineTrainer
from anonbench.methods.cyclegan.anonymizer import FAMILY as NAME
from anonbench.methods.cyclegan.anonymizer import generator
from anonbench.methods.cyclegan.model import patch_discriminator
from anonbench.methods.cyclegan.options import CycleGANConfig
from anonbench.methods.gan_train import set_grad
from anonbench.methods.landmark_data import TrainData
from anonbench.methods.pix2pix.model import init_weights

COMPUTED = ("d_a", "d_b", "g_a", "g_b", "cycle_a", "cycle_b", "idt_a", "idt_b")
LOSS_COLUMNS = ["step", "epoch", *COMPUTED, "lr", "seconds"]


def _mse(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, target))


class ImagePool:
    """The reference's history of generated images: until full, each new fake is stored and
    returned; then with probability 1/2 a random stored one is returned and replaced by the
    new fake, else the new fake is returned. Its random numbers come from the step's draws
    (u: uniforms, j: slots), so a resumed run replays it exactly."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, fakes: torch.Tensor, u: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes
        out = []
        for k, img in enumerate(fakes.detach()):
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(u[k]) > 0.5:
                slot = int(j[k])
                out.append(self.images[slot].clone())
                self.images[slot] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> torch.Tensor:
        return torch.stack(self.images).cpu() if self.images else torch.zeros(0)

    def load(self, t: torch.Tensor, device: torch.device) -> None:
        self.images = [x.to(device) for x in t] if t.numel() else []


class Trainer(BaselineTrainer):
    family = NAME
    computed = COMPUTED
    loss_columns = LOSS_COLUMNS
    generator_name = "G_A"
    norm = "instance"
    net_g = "resnet_9blocks"

    def __init__(self, cfg: CycleGANConfig, data: TrainData, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.cfg: CycleGANConfig = cfg
        torch.manual_seed(cfg.seed)  # weight init
        cl = self.memory_format

        def net(m: torch.nn.Module) -> torch.nn.Module:
            return init_weights(m).to(device, memory_format=cl)

        self.G_A = net(generator(self.in_ch, 3, cfg.ngf, self.norm))
        self.G_B = net(generator(3, self.in_ch, cfg.ngf, self.norm))
        self.D_A = net(patch_discriminator(3, cfg.ndf))
        self.D_B = net(patch_discriminator(self.in_ch, cfg.ndf))
        gens = itertools.chain(self.G_A.parameters(), self.G_B.parameters())
        discs = itertools.chain(self.D_A.parameters(), self.D_B.parameters())
        self.opt_G = self.adam(gens, cfg.lr)
        self.opt_D = self.adam(discs, cfg.lr)
        self.nets = {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}
        self.optimizers = {"generators": self.opt_G, "discriminators": self.opt_D}
        # the identity loss maps a real B through G_A (and A through G_B): it needs equal
        # channel counts, so the masked variant (6 -> 3) has none, as in the reference
        self.lambda_idt = cfg.lambda_identity if self.in_ch == 3 else 0.0
        self.pool_a, self.pool_b = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)

    def draw(self) -> dict[str, torch.Tensor]:
        n = self.cfg.batch_size
        a, b = self.draw_views(n), self.draw_views(n)
        d = {"idx_a": a["idx"], "box_a": a["box"], "idx_b": b["idx"], "box_b": b["box"]}
        slots = max(self.cfg.pool_size, 1)
        for p in ("a", "b"):
            d[f"pool_{p}_u"] = torch.rand(n, generator=self.gen)
            d[f"pool_{p}_j"] = torch.randint(slots, (n,), generator=self.gen)
        return d

    def compute(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        lam = self.cfg.lambda_cycle
        real_a, _ = self.inputs(self.views_at(d["idx_a"], d["box_a"]))
        _, real_b = self.inputs(self.views_at(d["idx_b"], d["box_b"]))
        # generators
        set_grad(self.D_A, False)
        set_grad(self.D_B, False)
        with self.autocast():
            fake_b = self.G_A(real_a).float()
            rec_a = self.G_B(fake_b).float()
            fake_a = self.G_B(real_b).float()
            rec_b = self.G_A(fake_a).float()
            g_a = _mse(self.D_A(fake_b).float(), 1.0)
            g_b = _mse(self.D_B(fake_a).float(), 1.0)
            zero = torch.zeros((), device=self.device)
            idt_a = idt_b = zero
            if self.lambda_idt > 0:
                idt_a = F.l1_loss(self.G_A(real_b).float(), real_b)
                idt_b = F.l1_loss(self.G_B(real_a).float(), real_a)
        cycle_a, cycle_b = F.l1_loss(rec_a, real_a), F.l1_loss(rec_b, real_b)
        loss_g = g_a + g_b + lam * (cycle_a + cycle_b) + lam * self.lambda_idt * (idt_a + idt_b)
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        # discriminators: real -> 1, a fake from the pool -> 0, halved
        set_grad(self.D_A, True)
        set_grad(self.D_B, True)
        pooled_b = self.pool_b.query(fake_b, d["pool_b_u"], d["pool_b_j"])
        pooled_a = self.pool_a.query(fake_a, d["pool_a_u"], d["pool_a_j"])
        with self.autocast():
            d_a = 0.5 * (_mse(self.D_A(real_b).float(), 1.0) + _mse(self.D_A(pooled_b).float(), 0))
            d_b = 0.5 * (_mse(self.D_B(real_a).float(), 1.0) + _mse(self.D_B(pooled_a).float(), 0))
        self.opt_D.zero_grad(set_to_none=True)
        (d_a + d_b).backward()
        self.opt_D.step()
        losses = [d_a, d_b, g_a, g_b, cycle_a, cycle_b, idt_a, idt_b]
        return torch.stack([x.detach().float() for x in losses])

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        return {
            "D": f"{row['d_a'] + row['d_b']:.3f}",
            "G": f"{row['g_a'] + row['g_b']:.3f}",
            "cyc": f"{row['cycle_a'] + row['cycle_b']:.3f}",
        }

    def extra_state(self) -> dict[str, Any]:
        pools = {"a": self.pool_a.state(), "b": self.pool_b.state()}
        return {**super().extra_state(), "pools": pools}

    def load_extra_state(self, state: dict[str, Any], source: str) -> None:
        pools = state.get("pools", {})
        self.pool_a.load(pools.get("a", torch.zeros(0)), self.device)
        self.pool_b.load(pools.get("b", torch.zeros(0)), self.device)


FAMILY = baseline_train.family(NAME, Trainer)
