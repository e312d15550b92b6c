"""The identity protocol (CIAGAN Tables 1, 2, 4) on any identity-labelled dataset: a
composition of scorers (anonbench.scorers) over an identity split (anonbench.splits).

Identities are split (seeded) into a train set, used only to train identity networks, and a
disjoint test set, anonymized once per method; the scorers (anonbench.scorers.composed runs
them) are:
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
Evaluators whose weights are not on disk give unavailable rows, never replaced.
"""

from __future__ import annotations

from anonbench.api import Option, RunContext
from anonbench.metrics import catalog
from anonbench.scorers.attackers import embed_trained, fit_attacker, is_trained, trained_attackers
from anonbench.scorers.base import Scorer
from anonbench.scorers.composed import IdentityProtocol
from anonbench.splits import SPLIT_OPTIONS, Split, load_split

# re-exported where they used to live (plug-ins and tests import them from here)
__all__ = ["CelebAProtocol", "Split", "embed_trained", "fit_attacker", "load_split"]

DEFAULT_DETECTORS = "dlib-hog,retinaface,mtcnn"
# only evaluators that work after install: mobilefacenet (weights not shipped) and the facenet
# ones (weights downloaded on first use) are there when asked for by name
DEFAULT_RECOGNIZERS = "pnca,dlib-resnet"
DEFAULT_LANDMARKERS = "dlib-68,mediapipe"


def _check_reversal(value: str) -> None:
    """A wrong `reversal` is refused with the other options, before any work."""
    from anonbench.metrics.reversal import parse_reversal

    parse_reversal(value, learned=True)


class CelebAProtocol(IdentityProtocol):
    """Identity protocol: detection rate, identity Recall@1, utility and FID/KID of
    anonymized test identities, on CelebA or any identity-labelled dataset."""

    name = "celeba"
    version = "2"
    save_artifacts = True
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
            check=_check_reversal,
        ),
        Option(
            "reversal_minutes",
            float,
            30.0,
            "reversal=learned: CPU-minutes (process time) of each method's restorer training",
        ),
    )

    def prepare(self, ctx: RunContext) -> None:
        from anonbench.metrics.reversal import parse_reversal

        parse_reversal(ctx.options.get("reversal"), learned=True)  # fails before any work
        self._prepare(ctx)

    def scorers(self, ctx: RunContext, split: Split) -> list[Scorer]:
        """The scorers the options ask for (evaluators that cannot run: unavailable rows);
        records the split and evaluators in ctx.extra (run.json)."""
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
        trained = trained_attackers(ctx, recs)
        real = {n: a for n, a in trained.items() if a.training == "real"}
        adaptive = [n for n, a in trained.items() if a.training != "real"]
        retrieval, attackers = RetrievalScorer(fixed, rec_why), TrainedRetrievalScorer(real)
        leaks = LeaksScorer(ctx.resources.analysis_detector)  # the faces methods anonymize
        scorers: list[Scorer] = [leaks, DetectionScorer(list(dets), det_why)]
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
        return scorers
