"""Does CIAGAN training make the identity input matter? Tools for the learning test
(tests/test_ciagan_learning.py) and for the GPU run's check before export
(benchmarks/ciagan_device.sh):

- `synthetic_faces`: a data set on which identity is learnable and known: every identity has
  its own colour and stripe direction inside the face mask, and (like hair in real photos) a
  hair colour outside it; pose, landmarks, lighting, background and noise vary per image.
- `LEARNING_CONFIG`: the small configuration of the paper's architecture (64 px, reduced
  widths) the learning test trains on CPU. A test configuration, not a shipped method.
- `identity_effect`: with a trained generator, how much the target identity changes the face
  and whether the face shows the target, measured inside the mask.
"""

from __future__ import annotations

import colorsys
import itertools
import math
from typing import Any

import numpy as np
import torch

from anonbench.methods.landmark_data import TrainData, Views, crop_boxes, make_views
from anonbench.methods.landmark_input import CANVAS, LINES

# the learning test's configuration of the paper's architecture (train.TrainConfig fields)
LEARNING_CONFIG: dict[str, Any] = dict(
    img_size=32,
    gen_width=8,
    critic_width=8,
    id_width=8,
    batch_size=8,
    embed_dim=16,
    pnca_epochs=3.0,
    amp="off",
    progress=False,
)


def _landmarks(cx: float, cy: float, s: float) -> np.ndarray:
    """68 points of a frontal face in canvas pixels (jaw, brows, nose bridge, eyes, lips)."""
    lm = np.zeros((68, 2), np.float64)
    t = np.linspace(np.pi, 2 * np.pi, 17)
    lm[:17] = np.stack([cx + 42 * s * np.cos(t), cy - 8 * s - 52 * s * np.sin(t)], 1)
    lm[17:27] = np.stack([np.linspace(cx - 36 * s, cx + 36 * s, 10), np.full(10, cy - 24 * s)], 1)
    lm[27:36] = np.stack([np.full(9, cx), np.linspace(cy - 16 * s, cy + 8 * s, 9)], 1)
    lm[36:48] = np.stack([np.linspace(cx - 26 * s, cx + 26 * s, 12), np.full(12, cy - 12 * s)], 1)
    a = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    lm[60:68] = np.stack([cx + 14 * s * np.cos(a), cy + 22 * s + 4 * s * np.sin(a)], 1)
    lm[48:60] = lm[60:68].mean(0)  # outer lips: not drawn, not used
    return lm


def _palette(n: int, sat: float, val: float, offset: float = 0.0) -> np.ndarray:
    return np.array(
        [colorsys.hsv_to_rgb((offset + i / n) % 1.0, sat, val) for i in range(n)], np.float32
    )


def synthetic_faces(
    n_ids: int = 6, per_id: int = 24, seed: int = 0, hair_cue: bool = True
) -> TrainData:
    """n_ids * per_id canvases (5 x 144 x 144 uint8: RGB, landmark lines, mask).

    Identity k: face colour (hue k / n_ids) with stripes at angle k * pi / n_ids inside the
    mask; hair colour (another hue) above the brows if hair_cue. Per image: face position
    (+-8 px), size (0.85-1.1), lighting (x0.8-1.2), background colour and gradient, pixel
    noise. The landmark drawing and mask come from the same 68 points, as in real data.
    """
    import cv2

    rng = np.random.default_rng(seed)
    face = _palette(n_ids, 0.55, 0.85)
    hair = _palette(n_ids, 0.8, 0.55, offset=0.5 / n_ids + 0.37)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    canvases = np.zeros((n_ids * per_id, 5, CANVAS, CANVAS), np.uint8)
    labels = np.repeat(np.arange(n_ids), per_id)
    for n, k in enumerate(labels):
        cx, cy = 72 + rng.uniform(-8, 8), 78 + rng.uniform(-8, 8)
        s = rng.uniform(0.85, 1.1)
        lm = _landmarks(cx, cy, s)
        light = rng.uniform(0.8, 1.2)
        # background: a random colour with a random linear gradient
        bg = rng.uniform(0.1, 0.9, 3).astype(np.float32)
        g = rng.normal(0, 0.002, 2).astype(np.float32)
        img = bg[None, None, :] + ((xx - 72) * g[0] + (yy - 72) * g[1])[..., None]
        if hair_cue:  # hair: an ellipse over the top of the head
            hm = ((xx - cx) / (50 * s)) ** 2 + ((yy - (cy - 28 * s)) / (36 * s)) ** 2 < 1
            img[hm] = hair[k] * light
        # the face: identity colour, stripes in the identity's direction
        theta = math.pi * k / n_ids
        u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
        stripes = 0.5 + 0.5 * np.sin(2 * math.pi * u / (24 * s))
        skin = face[k][None, None, :] * (0.75 + 0.35 * stripes[..., None]) * light
        mask = np.zeros((CANVAS, CANVAS), np.uint8)
        poly = np.vstack([(lm[0, 0], lm[19, 1]), lm[0:17], (lm[16, 0], lm[24, 1])])
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
        # the head: the mask polygon grown a little, so the face's edge is the head's
        head = cv2.dilate(mask, np.ones((7, 7), np.uint8)) > 0
        img[head] = skin[head]
        img = img + rng.normal(0, 0.03, img.shape).astype(np.float32)
        lines = np.zeros((CANVAS, CANVAS), np.uint8)
        p = np.trunc(lm).astype(np.int32)
        for a, b in LINES:
            cv2.line(lines, (int(p[a, 0]), int(p[a, 1])), (int(p[b, 0]), int(p[b, 1])), 255, 1)
        canvases[n, :3] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8).transpose(2, 0, 1)
        canvases[n, 3], canvases[n, 4] = lines, mask
    return TrainData(
        canvas=torch.from_numpy(canvases),
        labels=torch.from_numpy(labels.astype(np.int64)),
        identity_names=[f"synthetic{k}" for k in range(n_ids)],
        keys=[f"synthetic{k}_{n}" for n, k in enumerate(labels)],
        source={"data": f"synthetic:{n_ids}x{per_id}", "seed": seed, "hair_cue": hair_cue},
    )


def centre_views(data: TrainData, idx: torch.Tensor, size: int, device: torch.device) -> Views:
    canvas = data.canvas[idx.to(data.canvas.device)].to(device)
    return make_views(canvas, crop_boxes(len(idx), None, 0, 0), size)


@torch.no_grad()
def identity_effect(
    generator: torch.nn.Module,
    data: TrainData,
    sources: torch.Tensor,
    targets: list[int],
    *,
    identity_net: torch.nn.Module | None = None,
    other: torch.nn.Module | None = None,
    autocast: bool = False,
) -> dict[str, float]:
    """Generates the centre views of `sources` for every target and measures inside the mask
    (pixels in [0, 1]; means over pixels, faces and target pairs):

    - target_diff: |G(x, t1) - G(x, t2)|, different targets, same face;
    - source_diff: |G(x, t) - x|, how far the face moved from the original;
    - seed_diff (with `other`, a generator trained the same way with another seed):
      |G(x, t) - G'(x, t)|, same target and face; identity that the generator really uses
      makes target_diff larger than seed_diff;
    - colour_target_acc: share of outputs whose mean colour inside the mask is nearest to
      the mean colour of the target's real images (chance: 1 / len(targets));
    - embed_target_acc (with `identity_net`): the same with the identity net's embedding,
      nearest to the mean embedding of the target's real images.
    """
    generator.eval()
    dev = next(generator.parameters()).device
    size, n_ids = int(generator.img_size), int(generator.num_identities)
    v = centre_views(data, sources, size, dev)
    inp = torch.cat([v.landmarks, v.image * (1 - v.mask)], 1)
    m = v.mask
    area = m.sum((1, 2, 3)).clamp_min(1) * 3

    def run(net: torch.nn.Module, t: int) -> torch.Tensor:
        oh = torch.zeros(len(sources), n_ids, device=dev)
        oh[:, t] = 1
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            raw = net(inp, oh).float()
        return (raw * m + v.image * (1 - m)).clamp(0, 1)

    def in_mask(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b).abs() * m).sum((1, 2, 3)) / area  # per face

    outs = {t: run(generator, t) for t in targets}
    res: dict[str, float] = {
        "target_diff": float(
            torch.stack([in_mask(outs[a], outs[b]) for a, b in itertools.combinations(targets, 2)])
            .mean()
            .item()
        )
        if len(targets) > 1
        else 0.0,
        "source_diff": float(torch.stack([in_mask(o, v.image) for o in outs.values()]).mean()),
    }
    if other is not None:
        other.eval()
        res["seed_diff"] = float(
            torch.stack([in_mask(outs[t], run(other, t)) for t in targets]).mean()
        )

    res.update(_target_accuracy(data, targets, outs, m, size, dev, identity_net))
    res["chance"] = 1.0 / len(targets)
    return res


def _target_accuracy(
    data: TrainData,
    targets: list[int],
    outs: dict[int, torch.Tensor],
    m: torch.Tensor,
    size: int,
    dev: torch.device,
    identity_net: torch.nn.Module | None,
) -> dict[str, float]:
    """colour_target_acc (and embed_target_acc with `identity_net`): the share of outputs
    nearest to their own target's reference, built from the target's real images (centre
    views, all images of the identity)."""

    def colour(x: torch.Tensor, mm: torch.Tensor) -> torch.Tensor:
        return (x * mm).sum((2, 3)) / mm.sum((2, 3)).clamp_min(1)

    ref_c, ref_e = [], []
    for t in targets:
        idx = torch.nonzero(data.labels == t).flatten()
        rv = centre_views(data, idx, size, dev)
        ref_c.append(colour(rv.image, rv.mask).mean(0))
        if identity_net is not None:
            identity_net.eval()
            ref_e.append(identity_net(rv.image).float().mean(0))
    ref_c_t = torch.stack(ref_c)
    hits_c, hits_e = [], []
    for j, t in enumerate(targets):
        hits_c.append(torch.cdist(colour(outs[t], m), ref_c_t).argmin(1) == j)
        if identity_net is not None:
            e = identity_net(outs[t]).float()
            hits_e.append(torch.cdist(e, torch.stack(ref_e)).argmin(1) == j)
    res = {"colour_target_acc": float(torch.cat(hits_c).float().mean())}
    if identity_net is not None:
        res["embed_target_acc"] = float(torch.cat(hits_e).float().mean())
    return res


# -- the check a training run makes before it exports (benchmarks/ciagan_device.sh) -----------

# a checkpoint collapses when its targets change the face less than random initial weights do
# (0.020 at paper size, MODEL_CARD.md) or the identity net cannot tell the targets apart
COLLAPSE_TARGET_DIFF = 0.02
COLLAPSE_ACC_FACTOR = 2.0  # embed_target_acc must exceed this many times chance


def check_checkpoint(
    checkpoint: str,
    data: TrainData,
    device: str = "cpu",
    n_targets: int = 8,
    n_sources: int = 32,
    autocast: bool = False,
) -> dict[str, Any]:
    """identity_effect of a training checkpoint (last.pt: generator and identity net) on
    n_sources faces of its data (one per identity, spread over them) and n_targets target
    identities spread over its identities; adds `collapsed` and why."""
    from anonbench.methods.ciagan import checkpoint as ckpt_io
    from anonbench.methods.ciagan.model import build_models

    ck = ckpt_io.load(checkpoint)
    if "identity" not in ck["models"]:
        raise ckpt_io.CheckpointError(f"{checkpoint}: no identity net (an exported generator?)")
    n_ids = int(ck["num_identities"])
    nets = build_models(ck["config"], n_ids)
    dev = torch.device(device)
    for name in ("generator", "identity"):
        nets[name].load_state_dict(ck["models"][name])
        nets[name].to(dev)
    targets = sorted({round(i * (n_ids - 1) / max(n_targets - 1, 1)) for i in range(n_targets)})
    per = [torch.nonzero(data.labels == c).flatten() for c in range(n_ids)]
    picks = [round(i * (n_ids - 1) / max(n_sources - 1, 1)) for i in range(n_sources)]
    src = torch.stack([per[c][-1] for c in picks])  # the last face: not the sample grid's
    res: dict[str, Any] = identity_effect(
        nets["generator"], data, src, targets, identity_net=nets["identity"], autocast=autocast
    )
    why = []
    if res["target_diff"] < COLLAPSE_TARGET_DIFF:
        why.append(f"target_diff {res['target_diff']:.4f} < {COLLAPSE_TARGET_DIFF}")
    if res["embed_target_acc"] <= COLLAPSE_ACC_FACTOR * res["chance"]:
        why.append(
            f"embed_target_acc {res['embed_target_acc']:.3f} <= "
            f"{COLLAPSE_ACC_FACTOR:g} x chance {res['chance']:.3f}"
        )
    res.update(step=int(ck.get("step", 0)), targets=targets, collapsed=bool(why), why=why)
    return res


def main(argv: list[str] | None = None) -> int:
    """python -m anonbench.methods.ciagan.learning CKPT DATA.npz [--device cuda] [--json F]:
    prints the identity effect and one line `CIAGAN IDENTITY: OK` or `CIAGAN IDENTITY:
    COLLAPSED (...)`; exit status 0, or 3 when collapsed."""
    import argparse
    import json

    from anonbench.methods.landmark_data import load_prepared

    p = argparse.ArgumentParser(prog="python -m anonbench.methods.ciagan.learning")
    p.add_argument("checkpoint")
    p.add_argument("data", help="the prepared .npz the checkpoint was trained on")
    p.add_argument("--device", default="cpu")
    p.add_argument("--targets", type=int, default=8)
    p.add_argument("--sources", type=int, default=32)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast, as training used")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args(argv)
    res = check_checkpoint(
        a.checkpoint, load_prepared(a.data), a.device, a.targets, a.sources, a.bf16
    )
    print("identity effect:", json.dumps({k: v for k, v in res.items() if k != "why"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if res["collapsed"]:
        print("CIAGAN IDENTITY: COLLAPSED (" + "; ".join(res["why"]) + ")")
        return 3
    print(
        f"CIAGAN IDENTITY: OK (target_diff {res['target_diff']:.4f}, embed_target_acc "
        f"{res['embed_target_acc']:.3f}, chance {res['chance']:.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
