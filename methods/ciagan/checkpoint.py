"""CIAGAN checkpoints: plain dicts of tensors, numbers, strings, lists and dicts, written
atomically and read with `torch.load(..., weights_only=True)`.

    format: "anonbench-ciagan", format_version: 1
    config: the whole training config (dict); num_identities, img_size, identity_names
    models: {"generator": state dict[, "critic": ..., "identity": ...]}
    (training checkpoints add) optimizers, rng (data sampler, torch, cuda), step, epoch,
    pnca_done

A generator-only file (`export_generator`, optionally fp16) is what the anonymizer needs.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from anonbench.cache import atomic_open
from anonbench.errors import AnonbenchError

FORMAT = "anonbench-ciagan"
FORMAT_VERSION = 1


class CheckpointError(AnonbenchError):
    """A CIAGAN checkpoint that is missing, unreadable or does not fit."""


def save_atomic(obj: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: a reader sees the
    old or the new checkpoint, never half of one."""
    with atomic_open(path) as f:
        torch.save(obj, f)


def checkpoint_files(path: str | os.PathLike[str]) -> list[Path]:
    """The file itself, or its NAME.part* pieces in name order (checkpoints come back from
    training machines in pieces of at most 16 MiB); [] if neither exists."""
    p = Path(path)
    return [p] if p.is_file() else sorted(p.parent.glob(p.name + ".part*"))


def read_bytes(path: str | os.PathLike[str]) -> bytes | None:
    """The checkpoint's bytes (its pieces joined); None if it does not exist."""
    files = checkpoint_files(path)
    return b"".join(q.read_bytes() for q in files) if files else None


def is_checkpoint(
    reference: str | os.PathLike[str] | None, path: str | os.PathLike[str], size: int, sha256: str
) -> bool:
    """Whether the checkpoint read from `path` (`size` bytes, `sha256`) is `reference` (a
    shipped file), however its path was written: the same path, or the same content (sizes
    first, so other checkpoints cost no read of the reference)."""
    if reference is None:
        return False
    if Path(path) == Path(reference):
        return True
    files = checkpoint_files(reference)
    if not files or sum(f.stat().st_size for f in files) != size:
        return False
    raw = read_bytes(reference)
    return raw is not None and hashlib.sha256(raw).hexdigest() == sha256


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a checkpoint safely (weights_only) and checks its header."""
    raw = read_bytes(path)
    if raw is None:
        raise CheckpointError(f"CIAGAN checkpoint not found: {path}")
    return parse(raw, str(path))


def torch_load_bytes(
    raw: bytes, source: str, what: str, error: type[AnonbenchError] = AnonbenchError
) -> Any:
    """torch.load(weights_only=True) of checkpoint bytes; any defect (pickle errors, truncated
    files, foreign objects) is one line `error("cannot read {what} checkpoint {source}: ...")`."""
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError) and str(e).isdigit():
            # the weights-only unpickler meets a byte that is no pickle opcode (a text file,
            # say) and says only that byte's code ("101")
            first = "not a torch checkpoint (neither a zip archive nor a pickle)"
        raise error(f"cannot read {what} checkpoint {source}: {first}") from None


def parse(raw: bytes, source: str) -> dict[str, Any]:
    """torch.load(weights_only=True) of checkpoint bytes, with one-line errors."""
    ckpt = torch_load_bytes(raw, source, "CIAGAN", CheckpointError)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{source} is not an anonbench CIAGAN checkpoint (no format={FORMAT!r} header); "
            "train one with `anonbench train ciagan`"
        )
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has format version {ckpt['format_version']}; this anonbench reads up "
            f"to {FORMAT_VERSION}"
        )
    for k in ("config", "num_identities", "img_size", "models"):
        if k not in ckpt:
            raise CheckpointError(f"{source} lacks {k!r}")
    if not isinstance(ckpt["models"], dict) or "generator" not in ckpt["models"]:
        raise CheckpointError(f"{source} holds no generator weights")
    return ckpt


def check_fits(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Raises one clear line when state does not fit module (missing, extra or reshaped
    tensors), instead of PyTorch's multi-line report."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or extra or shaped):
        return
    if shaped:
        k = shaped[0]
        detail = f"{k} is {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
    elif missing:
        detail = f"missing {missing[0]}"
    else:
        detail = f"unexpected {extra[0]}"
    n = len(missing) + len(extra) + len(shaped)
    raise CheckpointError(f"{what} does not fit ({n} tensor(s) differ; first: {detail})")


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """`state` (an fp16 export too) into `module` in its own dtype, after check_fits."""
    check_fits(module, state, what)
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


def build_generator(ckpt: dict[str, Any], source: str = "checkpoint") -> torch.nn.Module:
    """The generator of a loaded checkpoint, in fp32, eval mode, on the CPU."""
    from anonbench.methods.ciagan.model import Generator

    cfg = ckpt["config"]
    n = int(ckpt["num_identities"])
    size = int(ckpt["img_size"])
    state = ckpt["models"]["generator"]
    # the one-hot input layer says how many identities the weights were trained for
    first = state.get("identity.fc.0.weight")
    if first is not None and int(first.shape[1]) != n:
        raise CheckpointError(
            f"{source}: header says {n} identities but the generator was trained for "
            f"{int(first.shape[1])}"
        )
    try:
        g = Generator(n, size, int(cfg.get("gen_width", 32)))
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from None
    load_weights(g, state, f"{source} (generator, {n} identities, {size}x{size})")
    return g.eval()


def export_generator(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], half: bool = True
) -> None:
    """Writes a generator-only checkpoint (fp16 by default: half the size; the anonymizer
    computes in fp32 or bf16 either way)."""
    ckpt = load(src)
    gen = ckpt["models"]["generator"]
    if half:
        # spectral-norm vectors stay fp32: sigma = u.W.v would move with their rounding
        gen = {
            k: v.half() if v.is_floating_point() and not k.endswith(("._u", "._v")) else v
            for k, v in gen.items()
        }
    out = {
        k: ckpt[k]
        for k in ("format", "format_version", "config", "num_identities", "img_size")
        if k in ckpt
    }
    out["identity_names"] = list(ckpt.get("identity_names", []))
    out["step"] = int(ckpt.get("step", 0))
    out["models"] = {"generator": gen}
    save_atomic(out, dst)


def random_generator_checkpoint(
    num_identities: int, img_size: int = 128, gen_width: int = 32, seed: int = 0
) -> dict[str, Any]:
    """A generator-only checkpoint with random weights: for smoke tests and benchmarks of the
    plumbing (its faces are noise)."""
    from anonbench.methods.ciagan.model import Generator

    with torch.random.fork_rng():  # leaves the caller's RNG as it was
        torch.manual_seed(seed)
        g = Generator(num_identities, img_size, gen_width)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": {"img_size": img_size, "gen_width": gen_width, "note": "random weights"},
        "num_identities": num_identities,
        "img_size": img_size,
        "identity_names": [str(i) for i in range(num_identities)],
        "step": 0,
        "models": {"generator": g.state_dict()},
    }
