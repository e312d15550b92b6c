"""Published numbers of the seed paper, shown beside ours where the protocol matches.

Maximov, Elezi, Leal-Taixé: "CIAGAN: Conditional Identity Anonymization Generative Adversarial
Networks", CVPR 2020 (main paper Tables 2 and 3, section 4.4's landmark attack, supplementary
Table 4). Each value names the
table and row it comes from. ``paper_evaluator`` is the model the paper used; ``evaluator`` is the
anonbench evaluator that is the *same* model, or None when anonbench has no identical one (then
the numbers are shown side by side but labelled as a different evaluator).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "CIAGAN (Maximov et al., CVPR 2020)"


@dataclass(frozen=True)
class PaperValue:
    table: str  # "Table 2"
    row: str  # the row label as printed
    method: str | None  # the anonbench method name; None: not available in anonbench
    protocol: str  # the anonbench protocol the table corresponds to
    dataset: str  # the dataset the paper evaluated on
    metric: str  # the anonbench metric name (same unit as ours)
    paper_evaluator: str  # the evaluator as the paper names it
    evaluator: str | None  # the identical anonbench evaluator, None if there is none
    value: float
    std: float | None = None
    caveat: str = ""  # what else differs between the paper's setup and ours


_T2 = "Table 2"  # CelebA: detection rate (%) and Recall@1 (%)
_T3 = "Table 3"  # LFW: TAR at FAR = 0.001, second image of each pair anonymized
_T4 = "Table 4"  # supplementary: FID on CelebA

# Table 2 rows: (paper row, anonbench method, Dlib, SSH, PNCA, FaceNet)
_TABLE2 = [
    ("Original", "original", 100.0, 100.0, 70.7, 65.1),
    ("Pixelization 16 by 16", "pixelate16", 0.0, 0.0, 0.3, 0.3),
    ("Pixelization 8 by 8", "pixelate8", 0.0, 0.0, 0.4, 0.3),
    ("Blur 9 by 9", "blur9", 90.6, 38.6, 16.9, 57.2),
    ("Blur 17 by 17", "blur17", 68.4, 0.3, 1.9, 0.5),
    ("Ours", "ciagan", 99.9, 98.7, 1.3, 1.0),
]

# Table 3 rows: (paper row, anonbench method, VGGFace2 mean, std, CASIA mean, std)
_TABLE3 = [
    ("Original", "original", 0.986, 0.010, 0.965, 0.016),
    ("Gafni et al. [7]", None, 0.038, 0.015, 0.035, 0.011),
    ("Ours", "ciagan", 0.034, 0.016, 0.019, 0.008),
]

# Section 4.4, "Recognition based on landmarks" (numbers in the text, no table): Recall@1 (%)
# of a P-NCA identifier trained on landmark images only; rows: (paper row, anonbench method, value)
_S44 = "Section 4.4 (text)"
_LANDMARKS = [
    ("Original (real landmarks)", "original", 30.5),
    ("Ours", "ciagan", 1.9),
]

# Table 4 rows: (paper row, anonbench method, FID)
_TABLE4 = [
    ("Pixelization 8 by 8", "pixelate8", 510.83),
    ("Pixelization 16 by 16", "pixelate16", 318.43),
    ("Blur 9 by 9", "blur9", 54.50),
    ("Blur 17 by 17", "blur17", 152.03),
    ("Pix2Pix [15]", "pix2pix", 121.41),
    ("CycleGAN [41]", "cyclegan", 185.26),
    ("Ours", "ciagan", 2.08),
]


def _build() -> list[PaperValue]:
    out: list[PaperValue] = []
    for row, method, dlib, ssh, pnca, facenet in _TABLE2:
        for metric, pev, ev, v in [
            ("detection_rate", "Dlib HOG", "dlib-hog", dlib),
            ("detection_rate", "SSH", None, ssh),  # anonbench's retinaface is not SSH
            ("recall_at_1", "PNCA", "pnca", pnca),
            # the paper's FaceNet weights are not stated; anonbench has no identical model
            ("recall_at_1", "FaceNet", None, facenet),
        ]:
            out.append(PaperValue(_T2, row, method, "celeba", "celeba", metric, pev, ev, v))
    for row, method, vgg, vgg_s, casia, casia_s in _TABLE3:
        for pev, ev, v, sd in [
            ("FaceNet (VGGFace2)", "facenet-vggface2", vgg, vgg_s),
            ("FaceNet (CASIA-WebFace)", "facenet-casia", casia, casia_s),
        ]:
            out.append(PaperValue(_T3, row, method, "lfw", "lfw", "tar_far_1e-3", pev, ev, v, sd))
    for row, method, v in _LANDMARKS:
        out.append(
            PaperValue(
                _S44,
                row,
                method,
                "landmark-attack",
                "celeba",
                "recall_at_1",
                "P-NCA on landmarks",
                "pnca-landmarks",
                v,
                caveat="The paper states these two numbers in the text of section 4.4; its "
                "landmark images and P-NCA training are described only in outline.",
            )
        )
    for row, method, fid in _TABLE4:
        out.append(
            PaperValue(
                _T4,
                row,
                method,
                "celeba",
                "celeba",
                "fid",
                "Inception-v3",
                None,
                fid,
                caveat="FID also depends on which images and how many are compared, and on "
                "their crop; the paper does not fully state its setup.",
            )
        )
    return out


PAPER_VALUES: list[PaperValue] = _build()


def for_protocol(protocol: str) -> list[PaperValue]:
    """The published values that correspond to an anonbench protocol (empty if none)."""
    return [v for v in PAPER_VALUES if v.protocol == protocol]
