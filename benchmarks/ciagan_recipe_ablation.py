"""CIAGAN training recipes on the synthetic identity data (methods/ciagan/learning.py), CPU.

Trains the learning test's small configuration with a recipe (train.TrainConfig fields as
key=value) and prints the instrumentation (losses.csv columns) over training and the
identity effect at the end. Used to record what each recipe change does (MODEL_CARD.md,
"Training recipe v2").

    OMP_NUM_THREADS=1 python benchmarks/ciagan_recipe_ablation.py --steps 300 \
        --set target_sampling=official --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from anonbench.methods.ciagan.learning import LEARNING_CONFIG, identity_effect, synthetic_faces
from anonbench.methods.ciagan.train import TrainConfig, Trainer


def _value(v: str) -> object:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def run(
    overrides: dict[str, object],
    steps: int,
    seed: int,
    data_seed: int = 0,
    grid: str = "",
    save: str = "",
    hair: bool = True,
) -> dict:
    data = synthetic_faces(seed=data_seed, hair_cue=hair)
    cfg = TrainConfig(**{**LEARNING_CONFIG, "seed": seed, **overrides})
    tr = Trainer(cfg, data, torch.device("cpu"))
    t0 = time.perf_counter()
    pnca = tr.pretrain_identity() if not tr.pnca_done else []
    t_pnca = time.perf_counter() - t0
    rows = [tr.step() for _ in range(steps)]
    t_gan = time.perf_counter() - t0 - t_pnca
    if grid:
        from pathlib import Path

        tr.sample_grid(Path(grid))
    if save:
        torch.save(tr.G.state_dict(), save)
    src = torch.tensor(
        [int(torch.nonzero(data.labels == c)[1]) for c in range(data.num_identities)]
    )
    eff = identity_effect(tr.G, data, src, list(range(data.num_identities)), identity_net=tr.S)
    return {"rows": rows, "pnca": pnca, "effect": eff, "t_pnca": t_pnca, "t_gan": t_gan, "G": tr.G}


def summary(rows: list[dict], n: int = 5) -> list[dict]:
    keys = [k for k in rows[0] if k not in ("step", "epoch", "seconds")]
    out = []
    for i in range(n):
        part = rows[i * len(rows) // n : (i + 1) * len(rows) // n]
        out.append(
            {"steps": f"{part[0]['step']}-{part[-1]['step']}"}
            | {k: sum(r[k] for r in part) / len(part) for k in keys}
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--json")
    ap.add_argument("--no-hair", action="store_true", help="synthetic faces without hair")
    ap.add_argument("--grid", default="", help="write the trainer's sample grid here")
    ap.add_argument("--save", default="", help="write the generator's state dict here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ov = {k: _value(v) for k, v in (s.split("=", 1) for s in a.set)}
    r = run(ov, a.steps, a.seed, grid=a.grid, save=a.save, hair=not a.no_hair)
    print("recipe", ov, f"pnca {r['t_pnca']:.0f} s, gan {r['t_gan']:.0f} s")
    if r["pnca"]:
        print(f"pnca loss {r['pnca'][0]:.3f} -> {sum(r['pnca'][-10:]) / 10:.3f}")
    for s in summary(r["rows"]):
        print(
            "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items())
        )
    print("effect", {k: round(v, 4) for k, v in r["effect"].items()})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "recipe": ov,
                    "steps": a.steps,
                    "seed": a.seed,
                    "summary": summary(r["rows"]),
                    "effect": r["effect"],
                    "t_gan": r["t_gan"],
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
