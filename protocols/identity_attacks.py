"""Two identity attacks from CIAGAN section 4.4, on CelebA split by identity (see celeba.py).

landmark-attack: a Proxy-NCA identifier trained only on landmark drawings (the CIAGAN drawing:
jaw, nose bridge, inner lips) of real train identities. Recall@1 of real test landmarks is the
leak that landmarks alone carry (paper: 30.5%); for a method, landmarks are re-extracted (dlib)
from its anonymized faces and matched against the real test landmarks (paper, CIAGAN: 1.9%).
A query whose anonymized face yields no landmarks counts as a miss and is counted.

faceswap: is an identity-conditioned method just pasting its target identity? Each generated
image is labelled with its target identity and matched (Recall@1) against real images of the
method's identities; a face swapper scores high, a true anonymizer near chance. Methods that
are not identity-conditioned are skipped with a note row, not an error.

Both are compositions of scorers (anonbench.scorers.landmark_attack, .target_retrieval) over
the identity split (anonbench.splits); landmark-attack runs through the same flow as celeba
(anonbench.scorers.composed).
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from anonbench.api import Anonymizer, Option, Protocol, RunContext
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError
from anonbench.metrics import catalog
from anonbench.scorers.base import Scorer
from anonbench.scorers.composed import IdentityProtocol, Prepared
from anonbench.splits import SPLIT_OPTIONS, Split, analyse_test, load_split

if TYPE_CHECKING:
    from anonbench.scorers.target_retrieval import TargetRetrievalScorer

ATTACKERS = ("pnca-landmarks", "pnca-landmark-points")
# measured on ../shared/data/celeba, default split, all test images (N = 2,939): points 26.2%
# [23.0, 29.1], drawings CNN 11.1% [9.4, 12.8] (benchmarks/results/landmark_attack.md)
DEFAULT_ATTACKER = "pnca-landmark-points"


class LandmarkAttack(IdentityProtocol):
    """Identity from landmarks alone: real test landmarks, and landmarks of anonymized faces."""

    name = "landmark-attack"
    # 3: the default attacker is pnca-landmark-points (was pnca-landmarks)
    version = "3"
    warn_unreadable = False
    metrics = catalog.specs(
        "recall_at_1",
        "landmarks_missing",
    )
    options = (
        *SPLIT_OPTIONS,
        Option(
            "attacker",
            str,
            DEFAULT_ATTACKER,
            "pnca-landmark-points (MLP on the drawing's 29 points, the stronger: 26.2% on real "
            "celeba test landmarks at the default split, against 11.1% for the CNN) or "
            "pnca-landmarks (CNN on the drawings)",
        ),
    )

    def scorers(self, ctx: RunContext, split: Split) -> list[Scorer]:
        from anonbench.scorers.attackers import trained_attacker
        from anonbench.scorers.landmark_attack import LandmarkAttackScorer

        name = str(ctx.options.get("attacker", DEFAULT_ATTACKER))
        if name not in ATTACKERS:
            raise AnonbenchError(f"landmark-attack: attacker={name!r}: expected one of {ATTACKERS}")
        return [LandmarkAttackScorer(trained_attacker(name, ctx, cache_dir=ctx.cache_dir))]

    def prepared(self, st: Prepared, ctx: RunContext) -> None:
        ctx.extra[self.name] = {
            **st.split.info,
            **getattr(st.scorers[0].attacker, "fit_info", {}),
            "test_images_with_landmarks": len(st.test),
            **ctx.originals.describe(st.split.test),
        }


class FaceSwapCheck(Protocol):
    """Recall@1 of generated faces against their TARGET identity (high = face swapping)."""

    name = "faceswap"
    version = "2"
    datasets = ("celeba", "folders")
    metrics = catalog.specs(
        "target_recall_at_1",
    )
    options = (
        Option(
            "recognizers",
            str,
            "dlib-resnet",
            "comma-separated recognizers (pnca is trained here on the train identities, the "
            "targets' own: the paper's P-NCA on the training set)",
        ),
        *SPLIT_OPTIONS,
    )

    def __init__(self) -> None:
        self._split: Split | None = None

    def _usable(self, method: Anonymizer, ctx: RunContext) -> tuple[list[str], str]:
        """The method's target identities present in the dataset, or why it is skipped."""
        labels = [str(x) for x in getattr(method, "target_labels", None) or []]
        if not method.meta.identity_conditioned:
            return [], f"skipped: {method.name} is not identity-conditioned"
        if not labels:
            return [], (
                f"skipped: {method.name}'s checkpoint does not name the dataset identity of "
                "each target"
            )
        present = {r.identity for r in ctx.data.records}
        usable = sorted(set(labels) & present)
        if len(usable) < 2:
            return [], (
                f"skipped: {ctx.data.label} holds real images of {len(usable)} of "
                f"{method.name}'s {len(labels)} target identities (needs 2 or more)"
            )
        return usable, ""

    def records(self, method: Anonymizer, ctx: RunContext) -> list[ImageRecord]:
        if not self._usable(method, ctx)[0]:
            return []
        if self._split is None:
            self._split = load_split(ctx)
        # boxes frozen before the target identities' gallery is analysed
        return analyse_test(ctx, self._split, warn=False)

    def targets(self, method: Anonymizer, ctx: RunContext) -> dict[str, int] | None:
        usable, _ = self._usable(method, ctx)
        if not usable:
            return None
        labels = [str(x) for x in method.target_labels]  # type: ignore[attr-defined]
        index = {lab: i for i, lab in enumerate(labels)}
        rng = random.Random(ctx.seed)
        return {r.key: index[rng.choice(usable)] for r in self.records(method, ctx)}

    def _scorer(
        self, ctx: RunContext, targets: dict[str, str], usable: list[str]
    ) -> TargetRetrievalScorer:
        """The target-retrieval scorer of the `recognizers` option: fixed recognizers, and
        trained attackers (pnca) that it fits on the split's train identities; one that cannot
        run gives a warning and an unavailable row, as in celeba."""
        from anonbench.registry import EMBEDDERS
        from anonbench.scorers import evaluators as E
        from anonbench.scorers.attackers import is_trained, trained_attackers
        from anonbench.scorers.target_retrieval import TargetRetrievalScorer

        wanted = E.names(ctx.options["recognizers"])
        recs, why = E.available(ctx, EMBEDDERS, wanted)
        for n, w in why.items():
            print(f"warning: evaluator {n} unavailable: {w}")
        fixed = [n for n, ev in recs.items() if not is_trained(ev)]
        trained = trained_attackers(ctx, recs)
        return TargetRetrievalScorer(fixed, targets, usable, trained, why)

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.scorers.base import Needs
        from anonbench.scorers.passes import frozen_boxes, output_pass, real_pass
        from anonbench.scorers.tables import write_per_item

        base = {"dataset": ctx.data.label, "split": "test", "metric": "target_recall_at_1"}
        usable, why = self._usable(method, ctx)
        if not usable:
            print(f"note: {why}")
            return [{**base, "evaluator": "-", "value": math.nan, "n": 0, "note": why}]
        test = self.records(method, ctx)
        labels = [str(x) for x in method.target_labels]  # type: ignore[attr-defined]
        targets = {k: labels[t] for k, t in (self.targets(method, ctx) or {}).items()}
        scorer = self._scorer(ctx, targets, usable)
        needs = scorer.needs()
        # the gallery: every real image of the target identities
        gallery = [r for r in ctx.data.records if r.identity in set(usable)]
        ctx.originals.analyze(gallery, "analyse target identities")
        g_boxes = frozen_boxes(ctx, gallery)
        g_pass = real_pass(ctx, gallery, needs, g_boxes, "faceswap gallery")
        scorer.prepare(g_pass, self._split, ctx)
        # the queries: the method's outputs of the test images (their originals: boxes only)
        real = real_pass(ctx, test, Needs(), frozen_boxes(ctx, test), "faceswap test")
        out = output_pass(ctx, real, method, store, needs, "faceswap outputs")
        rows = [{**base, **r.to_row()} for r in scorer.score(out, ctx)]
        ids = dict(zip(out.keys, out.identities, strict=True))
        write_per_item(ctx.out_dir, self.name, method.name, scorer.per_item(), ids)
        split = self._split
        ctx.extra[self.name] = {
            **(split.info if split else {}),
            "target_identities_in_data": len(usable),
        }
        return rows
