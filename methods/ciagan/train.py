"""`anonbench train ciagan`: trains the generator, critic and identity network.

Schedule (official code): per step the identity network trains on 1 batch of pairs
(contrastive loss), the critic 5 iterations (each one fake and one real batch, LSGAN), the
generator 1 batch (LSGAN + identity loss pulling the composite towards a real image of the
target identity). Adam betas (0.5, 0.999) for all three. One epoch = N / (12 B) steps, so every
image is drawn about once per epoch, as in the official code.

Learning rate: default 1e-4, the official code's (run_training.py and train.py), which made
the released model; the paper says 1e-5 (and betas (0.5, 0.9)). With the official epoch
definition a 60-epoch run on a 6k-image CelebA subset is ~1.9k steps, too few for 1e-5 to
move far. `--lr 1e-5` gives the paper's setting.

Training recipe v2 (the default; `--recipe v1` is the official code's, which made the shipped
checkpoint): Kaiming init of the identity branch's FC layers and generator targets always of
another identity than the source's; why and the measurements: MODEL_CARD.md, "Training
recipe v2". losses.csv also logs what tells whether the identity input is used (LOSS_COLUMNS).

Where we differ from the official code, for speed at equal batch and model size:
- the 5 critic iterations' fakes come from one generator forward of 5 B images (the generator
  is frozen during them and instance norm is per image, so the images are the same; its
  spectral-norm power iteration runs once per step instead of 5 times);
- the critic sees its fake and real batch in one forward (it has no batch statistics);
- the identity network sees both images of a pair in one forward (BatchNorm statistics over
  2 B images instead of B each);
- the real image's embedding in the generator step is computed without gradients;
- views are cut on the device with bilinear grid_sample (official: PIL Lanczos per image);
- random training crops span 0.75-1.0 of the canvas by default (official 0.5-0.75; see
  `--crop-range`): the official range zooms training faces 1.2-1.8x relative to the centre
  view used at inference and cuts off part of the face mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from anonbench.methods import gan_train as core
from anonbench.methods.ciagan import checkpoint as ckpt_io
from anonbench.methods.ciagan import pretrain
from anonbench.methods.ciagan.model import build_models
from anonbench.methods.ciagan.options import LEGACY_RECIPE, TrainConfig, validate
from anonbench.methods.gan_train import GanTrainer, grad_norm, set_grad
from anonbench.methods.landmark_data import (
    PairSampler,
    TrainData,
    Views,
    crop_boxes,
    make_views,
)

LOSS_COLUMNS = [
    "step",
    "epoch",
    "identity",
    "critic",
    "critic_real",
    "critic_fake",
    "gen_gan",
    "gen_identity",
    "seconds",
    # instrumentation (issue 10): is the identity input used?
    "id_dist_same",  # identity net: mean embedding distance of same-identity pairs
    "id_dist_diff",  # ... of different-identity pairs (margin = diff - same)
    "id_same_frac",  # share of same-identity pairs in the identity net's batch
    "gen_same_frac",  # share of generator pairs whose target is the source's identity
    "gen_id_dist",  # generator step: distance of the fake's embedding to the target's
    "gen_out_of_range",  # share of generated pixels (inside the mask) outside [0, 1]
    "grad_g_identity",  # norm of the generator loss's gradient on the identity branch
    "grad_g_onehot",  # ... on the first FC layer's weights (the one-hot's own weights)
    "grad_g_total",  # ... on the whole generator
]
# compute() returns these, in this order
COMPUTED = (
    "identity",
    "critic",
    "critic_real",
    "gen_gan",
    "gen_identity",
    "id_dist_same",
    "id_dist_diff",
    "id_same_frac",
    "gen_same_frac",
    "gen_id_dist",
    "gen_out_of_range",
    "grad_g_identity",
    "grad_g_onehot",
    "grad_g_total",
)


def contrastive_loss(
    e1: torch.Tensor, e2: torch.Tensor, same: torch.Tensor, margin: float
) -> torch.Tensor:
    """Official: 0.5 * [y d^2 + (1 - y) relu(margin - d)^2], d the Euclidean distance."""
    d2 = (e2.float() - e1.float()).pow(2).sum(1)
    y = same.float()
    return (0.5 * (y * d2 + (1 - y) * F.relu(margin - (d2 + 1e-9).sqrt()).pow(2))).mean()


def init_identity_branch(g: torch.nn.Module) -> None:
    """Recipe v2: Kaiming-normal weights for LeakyReLU(0.2) and zero biases in the identity
    branch's 7 FC layers. With PyTorch's default init each layer shrinks its input's variance
    about 6 times while its bias adds a constant, so the one-hot's part of the 4 x 4 identity
    code is ~1% of it (148 identities, paper widths) and the generator starts out, and stays,
    blind to the target; with this init it is ~75% (measured in MODEL_CARD.md)."""
    for m in g.identity.fc:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            torch.nn.init.zeros_(m.bias)


class Trainer(GanTrainer):
    """CIAGAN's generator, critic and identity network on the GAN training core: `step()`
    runs one training step (identity net, critic iterations, generator)."""

    family = "ciagan"
    format = ckpt_io.FORMAT
    format_version = ckpt_io.FORMAT_VERSION
    computed = COMPUTED
    loss_columns = LOSS_COLUMNS

    def __init__(self, cfg: TrainConfig, data: TrainData, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.cfg: TrainConfig = cfg
        self.data = data.to(device)
        self.n_ids = data.num_identities
        torch.manual_seed(cfg.seed)  # weight init
        nets = build_models(cfg.to_dict(), self.n_ids)
        if cfg.identity_init == "kaiming":
            init_identity_branch(nets["generator"])
        cl = self.memory_format
        self.G = nets["generator"].to(device, memory_format=cl)
        self.D = nets["critic"].to(device, memory_format=cl)
        self.S = nets["identity"].to(device, memory_format=cl)
        self.opt_G = self.adam(self.G.parameters(), cfg.lr)
        self.opt_D = self.adam(self.D.parameters(), cfg.lr)
        self.opt_S = self.adam(self.S.parameters(), cfg.lr * cfg.identity_lr_scale)
        self.nets = {"generator": self.G, "critic": self.D, "identity": self.S}
        self.optimizers = {"generator": self.opt_G, "critic": self.opt_D, "identity": self.opt_S}
        self.labels_dev = data.labels.to(device)
        self.sampler = PairSampler(data.labels, self.n_ids)
        self.pnca_done = cfg.identity_pretrain != "pnca"

    # -- helpers ----------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        per_step = 2 * self.cfg.critic_iters + 1 + self.cfg.identity_iters
        return max(1, len(self.data) // (self.cfg.batch_size * per_step))

    def views(self, idx: torch.Tensor, augment: bool = True) -> Views:
        """Views of images idx: random training crops (drawn now), or the centre crop."""
        boxes = crop_boxes(
            len(idx), self.gen if augment else None, self.cfg.crop_min, self.cfg.crop_max
        )
        return self._views_at(idx.to(self.device), boxes)

    def generate(self, v: Views, onehot: torch.Tensor) -> torch.Tensor:
        """Composite G * mask + image * (1 - mask) (not clamped, as in the official code)."""
        raw = self.G(torch.cat([v.landmarks, v.image * (1 - v.mask)], 1), onehot).float()
        return raw * v.mask + v.image * (1 - v.mask)

    # -- one training step: draws (CPU) and compute (device) ---------------------------------
    # Every random draw of a step is made first, on the CPU, in a fixed order; `compute` then
    # runs the three updates on device tensors only. That split lets a CUDA graph capture the
    # whole compute (`cuda_graphs`): one replay instead of thousands of kernel launches, which
    # is what bounds this model's step time at batch 16 on a large GPU.
    def draw(self) -> dict[str, torch.Tensor]:
        B, K, n_id = self.cfg.batch_size, self.cfg.critic_iters, self.cfg.identity_iters
        cmin, cmax = self.cfg.crop_min, self.cfg.crop_max

        def boxes(n: int) -> torch.Tensor:
            return crop_boxes(n, self.gen, cmin, cmax)

        d: dict[str, torch.Tensor] = {}
        ids = [(*self.sampler.sample(B, self.gen), boxes(B), boxes(B)) for _ in range(n_id)]
        for j, k in enumerate(("id_src", "id_tgt", "id_box_a", "id_box_b")):
            shape = (0, B, 4) if "box" in k else (0, B)
            empty = torch.zeros(shape, dtype=torch.float32 if "box" in k else torch.long)
            d[k] = torch.stack([t[j] for t in ids]) if ids else empty
        fakes = [self.sample_targets(B) for _ in range(K)]
        reals = [self.sampler.sample(B, self.gen)[0] for _ in range(K)]
        d["fake_src"] = torch.cat([f[0] for f in fakes])
        d["fake_tgt"] = torch.cat([f[1] for f in fakes])
        d["fake_box"] = boxes(K * B)
        d["real_src"] = torch.cat(reals)
        d["real_box"] = torch.cat([boxes(B) for _ in range(K)])
        d["gen_src"], d["gen_tgt"] = self.sample_targets(B)
        d["gen_box_s"], d["gen_box_t"] = boxes(B), boxes(B)
        return d

    def sample_targets(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(source, target-identity image) indices for generator passes: the official pairs
        (half same identity), or (recipe v2) a target identity always other than the source's."""
        if self.cfg.target_sampling == "official":
            return self.sampler.sample(n, self.gen)
        return self.sampler.sample_different(n, self.gen)

    def _views_at(self, idx: torch.Tensor, box: torch.Tensor) -> Views:
        v = make_views(self.data.canvas[idx], box, self.cfg.img_size)
        if self.memory_format is torch.channels_last:
            cl = torch.channels_last
            v = Views(*(t.contiguous(memory_format=cl) for t in (v.image, v.landmarks, v.mask)))
        return v

    def _onehot_at(self, idx: torch.Tensor) -> torch.Tensor:
        # scatter, not F.one_hot: one_hot checks its input on the host, which a graph cannot
        lab = self.labels_dev[idx]
        return torch.zeros(lab.shape[0], self.n_ids, device=self.device).scatter_(
            1, lab[:, None], 1.0
        )

    def compute(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """The step's updates on device draws; returns the detached losses and measurements
        named in COMPUTED, one tensor. Reading them once per step (not after every update)
        keeps the GPU queue full."""
        s_total, dist_same, dist_diff, n_same, n_diff = self._update_identity(d)
        d_total, real_total = self._update_critic(d)
        g = self._update_generator(d)
        n_id = max(d["id_src"].shape[0], 1)
        K = self.cfg.critic_iters
        return torch.stack(
            [
                s_total / n_id,
                d_total / K,
                real_total / K,
                g["gen_gan"],
                g["gen_identity"],
                dist_same / n_same.clamp_min(1),
                dist_diff / n_diff.clamp_min(1),
                n_same / (n_same + n_diff).clamp_min(1),
                g["gen_same_frac"],
                g["gen_id_dist"],
                g["gen_out_of_range"],
                g["grad_g_identity"],
                g["grad_g_onehot"],
                g["grad_g_total"],
            ]
        ).float()

    def _update_identity(self, d: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Identity network on pairs of the same / different identities (contrastive):
        (loss sum, same-pair distance sum, different-pair distance sum, their counts)."""
        B, cfg = self.cfg.batch_size, self.cfg
        s_total = torch.zeros((), device=self.device)
        zero = torch.zeros((), device=self.device)
        dist_same, dist_diff, n_same, n_diff = zero, zero, zero, zero
        for i in range(d["id_src"].shape[0]):
            src, tgt = d["id_src"][i], d["id_tgt"][i]
            same = self.labels_dev[src] == self.labels_dev[tgt]
            a, b = self._views_at(src, d["id_box_a"][i]), self._views_at(tgt, d["id_box_b"][i])
            set_grad(self.S, True)
            with self.autocast():
                e = self.S(torch.cat([a.image, b.image]))
            loss = contrastive_loss(e[:B], e[B:], same, cfg.margin)
            self.opt_S.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_S.step()
            s_total = s_total + loss.detach()
            with torch.no_grad():
                dist = (e[:B].float() - e[B:].float()).norm(dim=1)
                sf = same.float()
                dist_same = dist_same + (dist * sf).sum()
                dist_diff = dist_diff + (dist * (1 - sf)).sum()
                n_same, n_diff = n_same + sf.sum(), n_diff + (1 - sf).sum()
        return s_total, dist_same, dist_diff, n_same, n_diff

    def _update_critic(self, d: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """K critic iterations, each one fake and one real batch (LSGAN): (loss sum, its
        real part's sum)."""
        B, K = self.cfg.batch_size, self.cfg.critic_iters
        fv = self._views_at(d["fake_src"], d["fake_box"])
        with torch.no_grad(), self.autocast():
            comp = self.generate(fv, self._onehot_at(d["fake_tgt"]))
        fake_in = torch.cat([comp, fv.landmarks], 1)
        set_grad(self.D, True)
        d_total = torch.zeros((), device=self.device)
        real_total = torch.zeros((), device=self.device)
        for k in range(K):
            sl = slice(k * B, (k + 1) * B)
            rv = self._views_at(d["real_src"][sl], d["real_box"][sl])
            x = torch.cat([fake_in[sl], torch.cat([rv.image, rv.landmarks], 1)])
            with self.autocast():
                out = self.D(x).float()
            loss_fake = F.mse_loss(out[:B], torch.zeros_like(out[:B]))
            loss_real = F.mse_loss(out[B:], torch.ones_like(out[B:]))
            loss = loss_fake + loss_real
            self.opt_D.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_D.step()
            d_total = d_total + loss.detach()
            real_total = real_total + loss_real.detach()
        return d_total, real_total

    def _update_generator(self, d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Generator: LSGAN + identity loss towards a real image of the target identity;
        returns its losses and measurements (COMPUTED's gen_* and grad_g_* names)."""
        B, cfg = self.cfg.batch_size, self.cfg
        sv = self._views_at(d["gen_src"], d["gen_box_s"])
        tv = self._views_at(d["gen_tgt"], d["gen_box_t"])
        set_grad(self.D, False)
        set_grad(self.S, False)
        if cfg.identity_eval:  # optional: running BatchNorm statistics, not the batch's
            self.S.eval()
        with self.autocast():
            raw = self.G(
                torch.cat([sv.landmarks, sv.image * (1 - sv.mask)], 1),
                self._onehot_at(d["gen_tgt"]),
            ).float()
            comp = raw * sv.mask + sv.image * (1 - sv.mask)  # = self.generate(...)
            out = self.D(torch.cat([comp, sv.landmarks], 1)).float()
            e_fake = self.S(comp)
            with torch.no_grad():
                e_real = self.S(tv.image)
        self.S.train()
        loss_gan = F.mse_loss(out, torch.ones_like(out))
        ones = torch.ones(B, device=self.device)
        loss_id = contrastive_loss(e_fake, e_real, ones, cfg.margin)
        # optional (range_weight): pixels the generator puts outside [0, 1] inside the mask are
        # penalised (squared distance to the range); the official generator has no output
        # activation
        over = (raw - raw.detach().clamp(0, 1)) * sv.mask
        area = (sv.mask.sum() * 3).clamp_min(1)
        loss_range = over.pow(2).sum() / area
        loss = loss_gan + cfg.identity_weight * loss_id
        if cfg.range_weight:
            loss = loss + cfg.range_weight * loss_range
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            same = (self.labels_dev[d["gen_src"]] == self.labels_dev[d["gen_tgt"]]).float()
            g = {
                "grad_g_identity": grad_norm(self.G.identity.parameters(), self.device),
                "grad_g_onehot": grad_norm([self.G.identity.fc[0].weight], self.device),
                "grad_g_total": grad_norm(self.G.parameters(), self.device),
                "gen_same_frac": same.mean(),
                "gen_id_dist": (e_fake.float() - e_real.float()).norm(dim=1).mean(),
                "gen_out_of_range": (over != 0).float().sum() / area,
            }
        self.opt_G.step()
        return {"gen_gan": loss_gan.detach(), "gen_identity": loss_id.detach(), **g}

    def derived(self, vals: dict[str, float]) -> dict[str, float]:
        return {"critic_fake": vals["critic"] - vals["critic_real"]}

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        return {
            "D": f"{row['critic']:.3f}",
            "G": f"{row['gen_gan']:.3f}",
            "id": f"{row['gen_identity']:.3f}",
            "S": f"{row['identity']:.3f}",
        }

    def warm_start(self, src: str) -> None:
        """--init-generator: the file must be this config's generator, trained on the same
        identities (the one-hot's order is the identity order); the rest stays fresh."""
        cfg = self.cfg
        ckpt = ckpt_io.load(src)
        if int(ckpt["img_size"]) != cfg.img_size:
            raise ckpt_io.CheckpointError(
                f"--init-generator {src} is {ckpt['img_size']} px; this training is {cfg.img_size}"
            )
        if list(ckpt.get("identity_names", [])) != list(self.data.identity_names):
            raise ckpt_io.CheckpointError(
                f"--init-generator {src} was trained on {ckpt['num_identities']} identities that "
                f"differ from the {self.n_ids} in {cfg.data}"
            )
        what = f"--init-generator {src} (--gen-width {cfg.gen_width})"
        ckpt_io.load_weights(self.G, ckpt["models"]["generator"], what)
        print(f"ciagan: generator warm-started from {src} (its step {int(ckpt.get('step', 0))})")

    def before_training(self, out: Path) -> bool:
        if self.pnca_done:
            return False
        self.pretrain_identity(out / "pnca_losses.csv", out / PNCA_PARTIAL)
        return True

    # -- Proxy-NCA pretraining of the identity network (methods/ciagan/pretrain.py) ----------
    def pretrain_identity(
        self, log_path: Path | None = None, partial: Path | None = None
    ) -> list[float]:
        """Proxy-NCA on real images (the paper's pretraining), before GAN training; with
        `partial`, resumable (see pretrain.pretrain_identity)."""
        return pretrain.pretrain_identity(self, log_path, partial)

    # -- state ------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "num_identities": self.n_ids,
            "img_size": self.cfg.img_size,
            "identity_names": list(self.data.identity_names),
            "pnca_done": self.pnca_done,
        }

    def load_extra_state(self, state: dict[str, Any], source: str) -> None:
        self.pnca_done = bool(state["pnca_done"])

    # -- sample grid ------------------------------------------------------------------------
    def sample_grid(self, path: Path) -> None:
        sample_grid(self, path)


PNCA_PARTIAL = "pnca_partial.pt"  # the pretraining's own checkpoint, until last.pt exists


def _check_resume(saved: dict[str, Any], data: TrainData, last: Path, cfg: TrainConfig) -> None:
    if list(saved.get("identity_names", [])) != data.identity_names:
        raise ckpt_io.CheckpointError(
            f"{last} was trained on {saved['num_identities']} identities that differ from the "
            f"{data.num_identities} in {cfg.data}: cannot resume on other data"
        )


FAMILY = core.Family(
    name="ciagan",
    make=Trainer,
    load_data=lambda cfg: core.load_landmark_data(cfg, "ciagan"),
    load=ckpt_io.load,
    save=ckpt_io.save_atomic,
    validate=validate,
    check_resume=_check_resume,
    legacy=LEGACY_RECIPE,  # a checkpoint from before the recipe fields was trained with v1
)


def train(cfg: TrainConfig, resume: bool = False, given: set[str] | None = None) -> Path:
    """Runs training on the GAN core; returns the path of last.pt."""
    return core.train(FAMILY, cfg, resume, given)


@torch.no_grad()
def sample_grid(tr: Trainer, path: Path) -> None:
    """The training's sample grid. Rows: source, landmarks, three target identities; a header
    row shows a real image of each target. Fixed sources and targets (no draw from the data
    generator), the generator in eval mode (its spectral-norm vectors stay as they are)."""
    from torchvision.utils import save_image

    labels = tr.data.labels
    n_src = min(tr.cfg.grid_sources, tr.n_ids)
    firsts = [int(torch.nonzero(labels == c)[0]) for c in range(tr.n_ids)]
    src = torch.tensor(firsts[:n_src])
    tids = [round(i * (tr.n_ids - 1) / 2) for i in range(3)]
    tgt_img = tr.views(torch.tensor([firsts[t] for t in tids]), augment=False).image
    v = tr.views(src, augment=False)
    tr.G.eval()
    cols = []
    for t in tids:
        oh = F.one_hot(torch.full((n_src,), t, device=tr.device), tr.n_ids).float()
        with tr.autocast():
            cols.append(tr.generate(v, oh).clamp(0, 1))
    tr.G.train()
    blank = torch.ones_like(v.image[:1])
    rows = [torch.cat([blank, blank, tgt_img])]
    for i in range(n_src):
        rows.append(torch.stack([v.image[i], v.landmarks[i], *(c[i] for c in cols)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(rows).float().cpu(), path, nrow=5, padding=2, pad_value=1.0)
