"""The metric catalog: every built-in MetricSpec, declared once.

A protocol lists the metrics it reports by name (``metrics = specs("recall_at_1", ...)``);
direction, label, decimals, unit, default `check` tolerance and role (privacy, utility,
realism, count) come from here only. Plug-in protocols may declare their own MetricSpecs.
Nothing heavy is imported: protocol modules import this at module level.
"""

from __future__ import annotations

from anonbench.api import MetricSpec

# utility metrics: the value an output with no face or no landmarks counts at, and the cap of
# every per-image error (one wild fit weighs no more than a failure)
NME_CEILING = 0.5  # half the inter-ocular distance: the points are off the facial features
POSE_CEILING = 45.0  # degrees of head rotation between original and output
EXPRESSION_CEILING = 0.5  # mean change of the mouth and eye opening ratios


def _count(name: str, description: str, label: str) -> MetricSpec:
    """A count (value out of n): no direction, not checked by default."""
    return MetricSpec(name, None, description, label=label, decimals=0, unit="count", role="count")


_SPECS = (
    # privacy: an attacker's success; lower = better anonymization
    MetricSpec(
        "recall_at_1",
        False,
        "% of anonymized queries whose nearest real gallery "
        "image has the source identity; lower = better anonymization",
        label="Recall@1 %",
        decimals=1,
        tolerance=1.0,
        unit="percent",
        role="privacy",
    ),
    MetricSpec(
        "target_recall_at_1",
        False,
        "% of generated faces whose nearest real image "
        "(of the method's identities) has the target identity; chance = 1/identities",
        label="target Recall@1 %",
        decimals=1,
        tolerance=2.0,
        unit="percent",
        role="privacy",
    ),
    MetricSpec(
        "tar_far_1e-3",
        False,
        "true accept rate at FAR <= 0.001 (mean over folds); lower = better anonymization",
        label="TAR@FAR=1e-3",
        decimals=4,
        tolerance=0.01,
        unit="fraction",
        role="privacy",
    ),
    MetricSpec(
        "accuracy",
        False,
        "verification accuracy over the folds (each fold's threshold chosen on the other "
        "folds); 0.5 = chance",
        label="Accuracy",
        decimals=4,
        tolerance=0.01,
        unit="fraction",
        role="privacy",
    ),
    MetricSpec(
        "auc",
        False,
        "area under the ROC over all pairs (ties count half); 0.5 = chance",
        label="AUC",
        decimals=4,
        tolerance=0.01,
        unit="fraction",
        role="privacy",
    ),
    MetricSpec(
        "eer",
        True,
        "equal error rate over all pairs (FAR = FRR), 0.5 = chance; higher = better anonymization",
        label="EER",
        decimals=4,
        tolerance=0.01,
        unit="fraction",
        role="privacy",
    ),
    # utility: the face is kept (detectable, same geometry)
    MetricSpec(
        "detection_rate",
        True,
        "% of anonymized faces a detector still finds "
        "(IoU >= 0.5 with its detection on the original)",
        label="detection %",
        decimals=1,
        tolerance=1.0,
        unit="percent",
        role="utility",
    ),
    MetricSpec(
        "face_kept",
        True,
        "% of anonymized images in which the recognizer's own detector still finds the "
        "face (over the reference face); utility: a destroyed face scores low",
        label="face kept %",
        decimals=1,
        tolerance=2.0,
        unit="percent",
        role="utility",
    ),
    MetricSpec(
        "landmark_nme",
        False,
        "normalised mean error of the output's landmarks against the original's (divided "
        f"by the original's inter-ocular distance); an output without a face or landmarks "
        f"counts as {NME_CEILING} (the cap of every error); lower = geometry kept",
        label="landmark NME",
        decimals=3,
        tolerance=0.01,
        role="utility",
    ),
    MetricSpec(
        "pose_error",
        False,
        "degrees between the head rotations of original and output (PnP fit of six "
        "landmarks to a generic 3D face; geodesic angle, yaw/pitch/roll in the note); an "
        f"output without a face or landmarks counts as {POSE_CEILING:g} (the cap)",
        label="pose err. deg",
        decimals=1,
        tolerance=1.0,
        role="utility",
    ),
    MetricSpec(
        "expression_change",
        False,
        "mean of the absolute changes of the mouth-opening ratio and the eye aspect ratio, "
        f"output against original; an output without a face or landmarks counts as "
        f"{EXPRESSION_CEILING} (the cap)",
        label="expr. change",
        decimals=3,
        tolerance=0.02,
        role="utility",
    ),
    MetricSpec(
        "face_ssim",
        True,
        "SSIM of the output's face box against the original's (scikit-image); 1 = unchanged",
        label="face SSIM",
        decimals=3,
        tolerance=0.02,
        role="utility",
    ),
    MetricSpec(
        "face_psnr",
        True,
        "PSNR (dB, capped at 100) of the output's face box against the original's (scikit-image)",
        label="face PSNR dB",
        decimals=1,
        tolerance=0.5,
        role="utility",
    ),
    # realism: the outputs look like real faces
    MetricSpec(
        "fid",
        False,
        "Frechet Inception distance, anonymized vs real test images",
        label="FID",
        decimals=1,
        tolerance=2.0,
        role="realism",
    ),
    MetricSpec(
        "kid",
        False,
        "Kernel Inception distance (unbiased cubic-kernel MMD^2 of the FID features, "
        "torch-fidelity's estimator), anonymized vs real test images; std over subsets",
        label="KID",
        decimals=4,
        tolerance=0.005,
        role="realism",
    ),
    # counts: diagnostics behind the rates
    _count(
        "faces_missed",
        "anonymized images in which the anonymizer's detector found no face (returned "
        "unchanged: a leak, kept in the metrics)",
        "faces missed",
    ),
    _count(
        "embedder_no_face",
        "anonymized images in which the recognizer's detector found no face over the "
        "reference face (it embedded the reference box)",
        "recognizer found no face",
    ),
    _count(
        "original_not_detected",
        "originals a detector misses at the reference face (left out of its detection rate)",
        "originals not detected",
    ),
    _count(
        "landmarks_no_face",
        "outputs where the landmarker's detector found no face over the original's or the "
        "landmarker found no landmarks (counted at the ceiling of the utility metrics)",
        "landmarks failed",
    ),
    _count(
        "landmarks_missing",
        "anonymized faces in which dlib found no face to draw landmarks from (counted as misses)",
        "no landmarks",
    ),
    _count(
        "unreadable_images",
        "images that could not be read: unreadable originals' pairs are left out, undecodable "
        "outputs of a folder method are scored as their originals (leaks)",
        "unreadable",
    ),
)

CATALOG: dict[str, MetricSpec] = {s.name: s for s in _SPECS}
assert len(CATALOG) == len(_SPECS), "a metric is declared twice in the catalog"


def spec(name: str) -> MetricSpec:
    """The catalog's MetricSpec of `name` (KeyError naming the known metrics otherwise)."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"no metric {name!r} in the catalog ({', '.join(CATALOG)})") from None


def specs(*names: str) -> tuple[MetricSpec, ...]:
    """The catalog's MetricSpecs of `names`, in that order (a protocol's `metrics`)."""
    return tuple(spec(n) for n in names)
