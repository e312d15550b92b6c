"""What pix2pix and CycleGAN training share on the GAN core: the CIAGAN face views as data
(random training crops of the landmark drawing, masked face and face), the reference's
learning-rate schedule, the checkpoint (the `anonbench-gan` format the methods read, so
OUT/last.pt is directly a `--checkpoint`), and the sample grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anonbench.methods import gan_common
from anonbench.methods import gan_train as core
from anonbench.methods.gan_options import BaselineTrainConfig, validate_baseline
from anonbench.methods.gan_train import GanTrainer
from anonbench.methods.landmark_data import PairSampler, TrainData, Views, crop_boxes, make_views


def lr_factor(epoch: int, epochs: int) -> float:
    """The reference's `linear` policy with n_epochs = n_epochs_decay = epochs / 2: 1 for the
    first half, then 1 - (epoch + 1 - n_epochs) / (n_epochs_decay + 1) (epoch 0-based)."""
    decay = epochs // 2
    const = epochs - decay
    return 1.0 - max(0, epoch + 1 - const) / (decay + 1)


class BaselineTrainer(GanTrainer):
    """A landmarks -> face GAN: family subclasses build `nets` / `optimizers`, and set
    `generator_name` (the landmarks -> face network the method runs) and `norm`/`net_g`."""

    format = gan_common.FORMAT
    format_version = gan_common.FORMAT_VERSION
    # their steps change the learning rate (decay) and CycleGAN keeps an image pool on the host
    graphs_supported = False
    generator_name = "generator"
    norm = "batch"
    net_g = ""

    def __init__(self, cfg: BaselineTrainConfig, data: TrainData, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.cfg: BaselineTrainConfig = cfg
        self.data = data.to(device)
        self.sampler = PairSampler(data.labels, data.num_identities)
        self.in_ch = gan_common.check_variant(cfg.variant, self.family)
        self.step_lr = cfg.lr

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.data) // self.cfg.batch_size)

    def lr(self) -> float:
        epoch = self.step_count // self.steps_per_epoch
        return self.cfg.lr * lr_factor(epoch, self.cfg.epochs)

    def before_step(self) -> None:
        self.step_lr = self.lr()
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = self.step_lr

    def derived(self, vals: dict[str, float]) -> dict[str, float]:
        return {"lr": self.step_lr}  # the step's own (step_count has moved on)

    def draw_views(self, n: int) -> dict[str, torch.Tensor]:
        """n random images and their random crop boxes (CPU draws)."""
        idx = self.sampler.sample_images(n, self.gen)
        return {"idx": idx, "box": crop_boxes(n, self.gen, self.cfg.crop_min, self.cfg.crop_max)}

    def views_at(self, idx: torch.Tensor, box: torch.Tensor) -> Views:
        return make_views(self.data.canvas[idx], box, self.cfg.img_size)

    def inputs(self, v: Views) -> tuple[torch.Tensor, torch.Tensor]:
        """(generator input, real face), both in [-1, 1]."""
        return gan_common.generator_input(v, self.cfg.variant), v.image * 2 - 1

    @property
    def generator(self) -> torch.nn.Module:
        return self.nets[self.generator_name]

    def warm_start(self, src: str) -> None:
        """--init-generator into the generator the method runs: this family's checkpoint with
        the same variant, width and architecture, checked before loading. Discriminators,
        CycleGAN's G_B and the optimizers stay fresh."""
        from anonbench.methods.ciagan.checkpoint import load_weights, read_bytes

        raw = read_bytes(src)
        if raw is None:
            raise gan_common.GanCheckpointError(f"--init-generator: no such file: {src}")
        ckpt = gan_common.parse_checkpoint(raw, str(src), self.family)
        want = self.inference_config()
        for k in ("variant", "ngf", "norm", "netG", "in_channels", "img_size"):
            if k in ckpt["config"] and ckpt["config"][k] != want[k]:
                raise gan_common.GanCheckpointError(
                    f"--init-generator {src}: its {k} is {ckpt['config'][k]!r}, this "
                    f"training's is {want[k]!r}"
                )
        load_weights(self.generator, ckpt["generator"], f"--init-generator {src}")
        print(f"{self.family}: generator warm-started from {src} (its step {ckpt.get('step', 0)})")

    # -- checkpoint ---------------------------------------------------------------------------
    def inference_config(self) -> dict[str, Any]:
        """What the method needs to rebuild the generator (gan_common.build_generator)."""
        return {
            "variant": self.cfg.variant,
            "ngf": self.cfg.ngf,
            "norm": self.norm,
            "netG": self.net_g,
            "in_channels": self.in_ch,
            "out_channels": 3,
            "img_size": self.cfg.img_size,
        }

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["config"] = {**state["config"], **self.inference_config()}
        return state

    def extra_state(self) -> dict[str, Any]:
        # the method reads `generator`; torch.save stores the tensors once (same storages as
        # models[generator_name])
        return {"family": self.family, "generator": self.generator.state_dict()}

    # -- sample grid ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, path: Path) -> None:
        """Rows: the first 4 images (centre view); columns: landmark drawing, masked face
        (masked variant), generator output, output pasted into the mask, real face."""
        from torchvision.utils import save_image

        n = min(self.cfg.grid_sources, len(self.data))
        v = self.views_at(torch.arange(n), crop_boxes(n, None, 0, 0))
        x, _ = self.inputs(v)
        g = self.generator
        g.eval()
        with self.autocast():
            y = (g(x).float() + 1) / 2
        g.train()
        comp = (y * v.mask + v.image * (1 - v.mask)).clamp(0, 1)
        cols = [v.landmarks]
        if self.cfg.variant == "masked":
            cols.append(v.image * (1 - v.mask))
        cols += [y.clamp(0, 1), comp, v.image]
        grid = torch.stack(cols, 1).flatten(0, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid.float().cpu(), path, nrow=len(cols), padding=2, pad_value=1.0)


def load_checkpoint(path: Path, family: str) -> dict[str, Any]:
    from anonbench.methods.ciagan.checkpoint import read_bytes

    raw = read_bytes(path)
    if raw is None:
        raise gan_common.GanCheckpointError(f"{family} checkpoint not found: {path}")
    ckpt = gan_common.parse_checkpoint(raw, str(path), family)
    for k in ("models", "optimizers", "rng", "step"):
        if k not in ckpt:
            raise gan_common.GanCheckpointError(
                f"{path} is a generator-only {family} checkpoint (no {k!r}): cannot resume"
            )
    return ckpt


def family(name: str, make: Any) -> core.Family:
    """The core's description of a baseline family's training."""
    return core.Family(
        name=name,
        make=make,
        load_data=lambda cfg: core.load_landmark_data(cfg, name),
        load=lambda path: load_checkpoint(path, name),
        save=gan_common.save_checkpoint,
        validate=validate_baseline,
    )
