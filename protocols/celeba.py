"""The identity protocol (CIAGAN Tables 1, 2, 4) on any identity-labelled dataset: a
composition of scorers (anonbench.scorers) over an identity split (anonbench.splits).

Identities are split (seeded) into a train set, used only to train identity networks, and a
disjoint test set. Every test image is anonymized once per method (the production stage);
then one pass over the method's output store feeds every scorer:
- leaks: faces_missed (outputs returned unchanged);
- detection: % of outputs in which a detector finds a face with IoU >= 0.5 to its own face on
  the original over the reference face (originals it misses there are left out, counted);
- retrieval: Recall@1 of each recognizer, query = output, gallery = the real test images
  except the query's source; 95% interval by resampling identities; chance = 100 / number of
  test identities. Trained attackers (Proxy-NCA) are fitted on the train identities; the
  adaptive one is refitted per method on real + that method's outputs of them;
- reversal (`reversal=...`): retrieval again after the attacker restores every output;
- utility, per landmarker: landmark NME, head-pose error, expression change;
- realism: FID and KID on one set of Inception-v3 features per image set.
The reference face of an image is the face detected on its own original (anonbench.evaluate),
frozen at prepare. Evaluators whose weights are not on disk give unavailable rows, never
replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anonbench.api import Anonymizer, Option, Protocol, RunContext
from anonbench.data.records import ImageRecord
from anonbench.metrics import catalog
from anonbench.scorers.attackers import embed_trained, fit_attacker, is_trained, trained_attacker
from anonbench.scorers.base import Needs, Pass, Scorer
from anonbench.splits import SPLIT_OPTIONS, Split, analyse_test, load_split

# re-exported where they used to live (plug-ins and tests import them from here)
__all__ = ["CelebAProtocol", "Split", "embed_trained", "fit_attacker", "load_split"]

DEFAULT_DETECTORS = "dlib-hog,retinaface,mtcnn"
# only evaluators that work after install: mobilefacenet (weights not shipped) and the facenet
# ones (weights downloaded on first use) are there when asked for by name
DEFAULT_RECOGNIZERS = "pnca,dlib-resnet"
DEFAULT_LANDMARKERS = "dlib-68,mediapipe"


@dataclass
class _State:
    """What prepare leaves for every method: the split, the scored test records, the
    composed scorers, their union of needs and the real pass."""

    split: Split
    test: list[ImageRecord]
    scorers: list[Scorer]
    needs: Needs
    real: Pass
    features: Any  # anonbench.scorers.passes.FeatureBank or None
    adaptive: bool


class CelebAProtocol(Protocol):
    """Identity protocol: detection rate, identity Recall@1, utility and FID/KID of
    anonymized test identities, on CelebA or any identity-labelled dataset."""

    name = "celeba"
    version = "2"
    datasets = ("celeba", "folders")
    metrics = catalog.specs(
        "detection_rate",
        "recall_at_1",
        "fid",
        "kid",
        "landmark_nme",
        "pose_error",
        "expression_change",
        "landmarks_no_face",
        "faces_missed",
        "embedder_no_face",
        "original_not_detected",
        "face_ssim",
        "face_psnr",
    )
    options = (
        Option("detectors", str, DEFAULT_DETECTORS, "comma-separated detectors"),
        Option(
            "recognizers",
            str,
            DEFAULT_RECOGNIZERS,
            "comma-separated recognizers (embedders; pnca, pnca-adaptive are trained here; "
            "pnca-face is shipped, trained on the train identities of seed 0, test_fraction 0.5)",
        ),
        Option("identifier", str, "", "a trained Proxy-NCA net (pnca.pt) instead of training"),
        *SPLIT_OPTIONS,
        Option("fid", bool, True, "compute FID (Inception-v3 features)"),
        Option(
            "kid",
            bool,
            True,
            "compute KID on the same Inception-v3 features as FID (fid=0 turns both off)",
        ),
        Option("similarity", bool, False, "face-box SSIM and PSNR against the original"),
        Option(
            "landmarkers",
            str,
            DEFAULT_LANDMARKERS,
            "comma-separated landmarkers for the utility metrics (landmark_nme, pose_error, "
            "expression_change); empty = none",
        ),
        Option(
            "reversal",
            str,
            "none",
            "reversal attacks restoring each anonymized image before embedding: none, wiener, "
            "richardson-lucy, all (= wiener,richardson-lucy) or learned (a restoration network "
            "trained per method on its outputs of the train identities, reversal_minutes "
            "CPU-minutes each, so not in all), comma-separated (extra recall_at_1 rows per "
            "recognizer, adaptive ones excepted, evaluator '<recognizer>+<attack>')",
        ),
        Option(
            "reversal_minutes",
            float,
            30.0,
            "reversal=learned: CPU-minutes (process time) of each method's restorer training",
        ),
    )

    def __init__(self) -> None:
        self._state: _State | None = None

    def prepare(self, ctx: RunContext) -> None:
        from anonbench.metrics.reversal import parse_reversal

        parse_reversal(ctx.options.get("reversal"), learned=True)  # fails before any work
        self._prepare(ctx)

    def _prepare(self, ctx: RunContext) -> _State:
        if self._state is not None:
            return self._state
        from anonbench.scorers.passes import FeatureBank, frozen_boxes, real_pass

        split = load_split(ctx)
        test = analyse_test(ctx, split)  # reference boxes frozen before any train analysis
        scorers, adaptive = self._scorers(ctx, split)
        needs = Needs.union(s.needs() for s in scorers)
        features = FeatureBank(ctx) if needs.features else None
        boxes = frozen_boxes(ctx, test)
        real = real_pass(ctx, test, needs, boxes, f"{self.name} real test images", features)
        for s in scorers:
            s.prepare(real, split, ctx)
        self._state = _State(split, test, scorers, needs, real, features, adaptive)
        return self._state

    def _scorers(self, ctx: RunContext, split: Split) -> tuple[list[Scorer], bool]:
        """The scorers the options ask for (evaluators that cannot run: unavailable rows),
        and whether an adaptive attacker needs the train identities anonymized too; records
        the split and evaluators in ctx.extra (run.json)."""
        from anonbench.metrics.reversal import parse_reversal
        from anonbench.registry import DETECTORS, EMBEDDERS
        from anonbench.scorers import evaluators as E
        from anonbench.scorers.adaptive import AdaptiveAttackScorer
        from anonbench.scorers.detection import DetectionScorer
        from anonbench.scorers.leaks import LeaksScorer
        from anonbench.scorers.realism import RealismScorer
        from anonbench.scorers.retrieval import RetrievalScorer, TrainedRetrievalScorer
        from anonbench.scorers.reversal import LearnedReversal, ReversalScorer
        from anonbench.scorers.similarity import SimilarityScorer
        from anonbench.scorers.utility import CEILINGS, UtilityScorer, landmark_detector

        opt = ctx.options
        dets, det_why = E.available(ctx, DETECTORS, E.names(opt["detectors"]))
        recs, rec_why = E.available(ctx, EMBEDDERS, E.names(opt["recognizers"]))
        lms, lm_why = E.landmarkers(ctx, E.names(opt.get("landmarkers", "")), list(dets))
        for n, why in {**det_why, **rec_why, **lm_why}.items():
            print(f"warning: evaluator {n} unavailable: {why}")
        fixed = [n for n, ev in recs.items() if not is_trained(ev)]
        trained = {n: self._attacker(n, ctx) for n, ev in recs.items() if is_trained(ev)}
        real = {n: a for n, a in trained.items() if a.training == "real"}
        adaptive = [n for n, a in trained.items() if a.training != "real"]
        retrieval, attackers = RetrievalScorer(fixed, rec_why), TrainedRetrievalScorer(real)
        scorers: list[Scorer] = [LeaksScorer(), DetectionScorer(list(dets), det_why)]
        scorers += [retrieval, attackers, AdaptiveAttackScorer(adaptive)]
        attacks = parse_reversal(opt.get("reversal"), learned=True)
        learned = (
            LearnedReversal(opt.get("reversal_minutes", 30.0)) if "learned" in attacks else None
        )
        for attack in attacks:  # adaptive ones excepted
            scorers += [ReversalScorer(i, [attack], learned) for i in (attackers, retrieval)]
        scorers.append(UtilityScorer(lms, lm_why))
        if opt.get("similarity", False):
            scorers.append(SimilarityScorer())
        if opt.get("fid", True):
            scorers.append(RealismScorer(kid=bool(opt.get("kid", True))))
        ctx.extra[self.name] = {
            **split.info,
            "detectors": list(dets),
            "recognizers": fixed + list(trained),
            "landmarkers": {n: landmark_detector(lm) for n, lm in lms.items()},
            "utility_ceilings": dict(CEILINGS),
            "unavailable": {**det_why, **rec_why, **lm_why},
            **ctx.originals.describe(split.test),
        }
        return scorers, bool(adaptive)

    @staticmethod
    def _attacker(name: str, ctx: RunContext) -> Any:
        """A trained attacker; pnca loads the `identifier` checkpoint when one is given."""
        extra = {}
        if name == "pnca" and ctx.options.get("identifier"):
            extra["checkpoint"] = ctx.options["identifier"]
        return trained_attacker(name, ctx, **extra)

    def records(self, method: Anonymizer, ctx: RunContext) -> list[ImageRecord]:
        st = self._prepare(ctx)
        train = st.adaptive or any(getattr(s, "needs_train", False) for s in st.scorers)
        return st.test + (st.split.train if train else [])

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.scorers.passes import output_pass
        from anonbench.scorers.tables import write_per_item

        st = self._prepare(ctx)
        desc = f"{self.name} {method.name}"
        out = output_pass(ctx, st.real, method, store, st.needs, desc, st.features)
        self._artifacts(out, ctx)
        results, items = [], []
        for s in st.scorers:  # per_item right after score: a wrapper rescores its inner one
            results += s.score(out, ctx)
            items += s.per_item()
        ids = dict(zip(out.keys, out.identities, strict=True))
        write_per_item(ctx.out_dir, self.name, method.name, items, ids)
        base = {"dataset": ctx.data.label, "split": "test"}
        return [{**base, **r.to_row()} for r in results]

    def _artifacts(self, out: Pass, ctx: RunContext) -> None:
        """Example outputs (one per identity, a few) and the list of missed faces."""
        from anonbench.examples import pick_examples, save_examples, save_missed

        chosen = set(pick_examples(list(zip(out.keys, out.identities, strict=True))))
        examples = [(r.key, r.identity, out.load(r.key)) for r in out.records if r.key in chosen]
        save_examples(ctx.out_dir, self.name, out.label, examples)
        save_missed(ctx.out_dir, self.name, out.label, out.store.missed(out.records))
