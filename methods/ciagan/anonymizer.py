"""The registered `ciagan` method: crop each face the official way, draw its landmarks, mask
it, generate a new face for a chosen identity at 128 x 128 and paste it back."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anonbench.api import Anonymizer, FaceBatch, MethodMeta
from anonbench.errors import AnonbenchError
from anonbench.methods.ciagan import checkpoint as ckpt_io

# a checkpoint shipped in the package (generator only); may be split into NAME.partNN files
# because files come back from training machines in pieces of at most 16 MiB
PACKAGE_WEIGHTS = Path(__file__).parent / "weights" / "ciagan_generator.pt"

TRAIN_HINT = (
    "train one with `anonbench train ciagan --data celeba:PATH --out DIR` and pass "
    "DIR/last.pt (anonbench run: --checkpoint ciagan=DIR/last.pt; anonbench anonymize: "
    "--checkpoint DIR/last.pt)"
)


def shipped_note(ckpt: dict[str, Any]) -> str:
    """The caveat carried by every result of the shipped checkpoint."""
    # no "; " inside: result notes use it to join separate notes
    return (
        # no step count: a warm-started run's counter is not the lineage's, the card has both
        f"shipped CPU-trained checkpoint ({int(ckpt.get('img_size', 128))} px, its training "
        "steps, CPU-hours and scores in methods/ciagan/weights/MODEL_CARD.md): its faces are "
        "soft and it is not the paper's model, so train your own (`anonbench train ciagan`) "
        "for paper comparisons"
    )


DTYPES = ("auto", "fp32", "bf16")


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """The generator's precision: "fp32" or "bf16" (autocast); "auto" is bf16 on CUDA devices
    that support it, else fp32."""
    if dtype not in DTYPES:
        raise AnonbenchError(f"ciagan: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    return dtype


class CIAGAN(Anonymizer):
    """CIAGAN (Maximov et al., CVPR 2020): landmarks + chosen identity -> new face.

    checkpoint: a training checkpoint (last.pt) or an exported generator; default: the one
    shipped in the package, if any. identity: a fixed target identity for every face; else
    targets come from `anonymize(targets=...)`, from its torch.Generator, or from a hash of
    (seed, item key), so an item always gets the same identity for a given seed.

    dtype: "auto" (bf16 autocast on CUDA devices that support it, else fp32; the default and
    the behaviour before this option), "fp32", or "bf16" (autocast; allowed on CPU too, where
    it is slower and only useful for checking agreement). compile: wrap the generator in
    `torch.compile` (CUDA only: on CPU it is refused with an AnonbenchError). Both are in
    `config()`, so outputs made with them are cached apart.
    """

    name = "ciagan"

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        identity: int | None = None,
        seed: int = 0,
        dtype: str = "auto",
        compile: bool = False,
    ) -> None:
        path = Path(checkpoint) if checkpoint else PACKAGE_WEIGHTS
        raw = ckpt_io.read_bytes(path)
        if raw is None:
            if checkpoint:
                what = "a folder, not a checkpoint file" if path.is_dir() else "not found"
                raise AnonbenchError(f"CIAGAN checkpoint {checkpoint}: {what}")
            raise AnonbenchError(
                f"ciagan needs a trained checkpoint and none ships with it: {TRAIN_HINT}"
            )
        self.checkpoint = str(path)
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise AnonbenchError(f"ciagan: device {device!r} requested but CUDA is unavailable")
        self.dtype = resolve_dtype(dtype, self.device)
        self.compile = bool(compile)
        if self.compile and self.device.type != "cuda":
            raise AnonbenchError(
                f"ciagan: compile=True needs a CUDA device (got {device!r}): torch.compile of "
                "the generator is only supported and worth its compile time on CUDA"
            )
        self._compiled: torch.nn.Module | None = None
        ckpt = ckpt_io.parse(raw, self.checkpoint)
        self.generator_net = ckpt_io.build_generator(ckpt, self.checkpoint).to(self.device)
        # the dataset identity behind each target index (the faceswap protocol needs it)
        self.target_labels = [str(x) for x in ckpt.get("identity_names", [])]
        self.num_identities = int(self.generator_net.num_identities)
        self.img_size = int(self.generator_net.img_size)
        if identity is not None and not 0 <= int(identity) < self.num_identities:
            raise AnonbenchError(
                f"ciagan: identity {identity} out of range: this checkpoint has "
                f"{self.num_identities} identities (0..{self.num_identities - 1})"
            )
        self.identity = None if identity is None else int(identity)
        self.seed = int(seed)
        self.meta = MethodMeta(
            paper="Maximov, Elezi, Leal-Taixé: CIAGAN, CVPR 2020",
            license="code: MIT (re-implementation of dvl-tum/ciagan); weights: trained on "
            "CelebA (non-commercial research)",
            input_size=(self.img_size, self.img_size),
            checkpoint_sha256=self.sha256,
            identity_conditioned=True,
            deterministic=True,
            note=shipped_note(ckpt)
            if ckpt_io.is_checkpoint(PACKAGE_WEIGHTS, path, len(raw), self.sha256)
            else "",
        )

    def _load(self, raw: bytes) -> torch.nn.Module:
        ckpt = ckpt_io.parse(raw, self.checkpoint)
        return ckpt_io.build_generator(ckpt, self.checkpoint).to(self.device)

    # pickled into worker processes without the weights: each worker reloads the file
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["generator_net"] = None
        state["_compiled"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _net(self) -> torch.nn.Module:
        if self.generator_net is None:
            raw = ckpt_io.read_bytes(Path(self.checkpoint))
            if raw is None or hashlib.sha256(raw).hexdigest() != self.sha256:
                raise AnonbenchError(f"{self.checkpoint} changed since it was first loaded")
            self.generator_net = self._load(raw)
        if self.compile:
            if self._compiled is None:
                self._compiled = torch.compile(self.generator_net)
            return self._compiled
        return self.generator_net

    def config(self) -> dict[str, Any]:
        return {
            "checkpoint_sha256": self.sha256,
            "identity": self.identity,
            "seed": self.seed,
            "num_identities": self.num_identities,
            "dtype": self.dtype,
            "compile": self.compile,
        }

    def choose_targets(
        self,
        keys: Sequence[str],
        targets: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Explicit targets, else the fixed identity, else draws from generator, else a hash
        of (seed, key)."""
        n = self.num_identities
        if targets is not None:
            out = [int(t) for t in targets]
            if len(out) != len(keys):
                raise ValueError(f"ciagan: {len(out)} targets for {len(keys)} faces")
            bad = [t for t in out if not 0 <= t < n]
            if bad:
                raise AnonbenchError(f"ciagan: target identity {bad[0]} out of range 0..{n - 1}")
            return out
        if self.identity is not None:
            return [self.identity] * len(keys)
        if generator is not None:
            return torch.randint(n, (len(keys),), generator=generator).tolist()
        return [
            int.from_bytes(hashlib.sha256(f"{self.seed}|{k}".encode()).digest()[:8], "big") % n
            for k in keys
        ]

    @torch.no_grad()
    def _generate(
        self,
        batch: FaceBatch,
        *,
        targets: Sequence[int] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        import torch.nn.functional as F

        from anonbench.methods.gan_common import face_views, paste_faces

        net = self._net()
        ids = self.choose_targets(batch.keys, targets, generator)
        todo, v, affines = face_views(batch, self.img_size, self.device)
        if not todo:
            return batch.images.detach().clone()
        onehot = F.one_hot(torch.tensor([ids[i] for i in todo]), self.num_identities)
        inp = torch.cat([v.landmarks, v.image * (1 - v.mask)], 1)
        use_bf16 = self.dtype == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            raw = net(inp, onehot.float().to(self.device)).float()
        # the raw output is pasted into the CIAGAN mask like the pix2pix/CycleGAN faces
        return paste_faces(batch, todo, v, affines, raw)
