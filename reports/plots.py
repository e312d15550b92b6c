"""Figures for reports (matplotlib, Agg backend), returned as PNG bytes for embedding.

Plots draw what the run folders hold: metric rows and the saved per-pair scores. The ROC curve
is the pooled curve of the saved scores (the table's TAR is the mean of per-fold thresholds
chosen on the other folds), which the caption states.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.escape import one_line

# colour-blind-safe (Okabe-Ito), original in black so the reference stands out
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # reports are written on headless machines
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 110,
            "svg.fonttype": "none",
        }
    )
    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def method_colors(methods: list[str]) -> dict[str, str]:
    """A stable colour per method across all figures of one report."""
    out: dict[str, str] = {}
    k = 0
    for m in methods:
        if m in out:
            continue
        if m == "original":
            out[m] = "#000000"
        else:
            out[m] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


@dataclass
class RocCurve:
    method: str
    far: np.ndarray
    tar: np.ndarray
    n_pos: int
    n_neg: int


def roc_from_scores(path: Path, method: str) -> RocCurve | None:
    """The pooled ROC of a scores file (fold,pair,label,score); None if it is unusable."""
    import pandas as pd

    try:
        s = pd.read_csv(path, encoding="utf-8")
    except (OSError, ValueError):  # empty, malformed, not UTF-8 (a ValueError too)
        return None
    if not {"label", "score"} <= set(s.columns):
        return None
    label = pd.to_numeric(s["label"], errors="coerce")
    score = pd.to_numeric(s["score"], errors="coerce")
    keep = np.isfinite(score) & label.isin([0, 1])  # anything else is not a scored pair
    y = label[keep].to_numpy().astype(int)
    sc = score[keep].to_numpy().astype(float)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-sc, kind="mergesort")
    y, sc = y[order], sc[order]
    tp = np.cumsum(y == 1)
    fp = np.cumsum(y == 0)
    # one point per distinct threshold: the last index of each run of tied scores
    last = np.r_[np.nonzero(np.diff(sc))[0], len(sc) - 1]
    far = np.r_[0.0, fp[last] / n_neg]
    tar = np.r_[0.0, tp[last] / n_pos]
    return RocCurve(method, far, tar, n_pos, n_neg)


def roc_png(curves: list[RocCurve], colors: dict[str, str], far_mark: float = 1e-3) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    floor = min(1.0 / max(c.n_neg, 1) for c in curves)
    for i, c in enumerate(curves):
        # log x: plot FAR=0 at the smallest resolvable FAR so the curve starts at the axis
        far = np.maximum(c.far, floor)
        ax.step(
            far,
            c.tar,
            where="post",
            color=colors.get(c.method, PALETTE[i % len(PALETTE)]),
            lw=1.6,
            label=one_line(c.method),  # a control character has no glyph
        )
    if far_mark >= floor:  # with few negative pairs FAR=1e-3 is not resolvable: no mark
        ax.axvline(far_mark, color="#888", ls="--", lw=1)
        ax.text(far_mark, 0.02, f" FAR={far_mark:g}", color="#555", fontsize=8, va="bottom")
    ax.set_xscale("log")
    ax.set_xlim(min(floor, 0.1), 1.0)  # one impostor pair or none: floor is 1, keep a range
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("false accept rate (different people accepted)")
    ax.set_ylabel("true accept rate (same person accepted)")
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    return _png(fig)


@dataclass
class Point:
    method: str
    series: str  # e.g. the recognizer
    x: float
    y: float
    x_lo: float | None = None
    x_hi: float | None = None
    y_lo: float | None = None
    y_hi: float | None = None


def _err(v: float, lo: float | None, hi: float | None) -> list[float]:
    # an infinite bound cannot be drawn (nor scaled to): no bar, as for a missing one
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 0.0]
    return [max(0.0, v - lo), max(0.0, hi - v)]


def scatter_png(
    points: list[Point],
    colors: dict[str, str],
    xlabel: str,
    ylabel: str,
    chance: dict[str, float] | None = None,
) -> bytes:
    """Privacy (y, lower = better) against utility (x, higher = better): one point per method
    with interval bars, one panel per series (recognizer); the good corner is bottom right.
    Non-finite points and chance levels are left out (an axis cannot hold +-inf); callers
    that want to say so filter them first. ValueError when no finite point is left."""
    points = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    if not points:
        raise ValueError("scatter_png: no finite point to draw")
    chance = {k: v for k, v in (chance or {}).items() if math.isfinite(v)}
    plt = _plt()
    series = list(dict.fromkeys(p.series for p in points))
    ncol = min(2, len(series))
    nrow = math.ceil(len(series) / ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(5.6 if ncol == 1 else 9.6, 3.9 * nrow), squeeze=False, sharex=True
    )
    xs = [p.x for p in points]
    lo, hi = min(xs), max(xs)
    mid = (lo + hi) / 2 if hi > lo else lo - 1
    pad = max(2.0, 0.12 * (hi - lo))
    left, right_lim = lo - pad, hi + pad
    if hi <= 100.0:  # a percentage: no ticks far past 100
        right_lim = min(right_lim, 100.0 + 0.5 * pad)
    if lo >= 0:
        left = max(left, -0.5 * pad)
    ys_all = [p.y for p in points] + list((chance or {}).values())
    pos = [y for y in ys_all if y > 0]
    # privacy values crowd near zero while the reference sits far above: a symmetric log
    # axis keeps 0.4 vs 1.3 apart without hiding exact zeros
    use_symlog = bool(pos) and max(pos) / min(pos) > 20
    labels: list[tuple[Any, Point]] = []
    for k, ser in enumerate(series):
        ax = axes[k // ncol][k % ncol]
        for p in (p for p in points if p.series == ser):
            xe, ye = _err(p.x, p.x_lo, p.x_hi), _err(p.y, p.y_lo, p.y_hi)
            ax.errorbar(
                [p.x],
                [p.y],
                xerr=[[xe[0]], [xe[1]]],
                yerr=[[ye[0]], [ye[1]]],
                fmt=MARKERS[0],
                color=colors.get(p.method, "#333"),
                ms=7,
                capsize=3,
                lw=1,
            )
            labels.append((ax, p))
        ch = (chance or {}).get(ser)
        if ch is not None and math.isfinite(ch):
            ax.axhline(ch, color="#888", ls=":", lw=1.2, label=f"chance ({ch:g})")
            ax.legend(frameon=False, fontsize=8, loc="upper left")
        ax.set_xlim(left, right_lim)
        if hi <= 100.0:  # a percentage: no tick labels past 100 in the padding
            ax.set_xticks([v for v in ax.get_xticks() if left <= v <= 100.0])
            ax.set_xlim(left, right_lim)
        if use_symlog:
            from matplotlib.ticker import ScalarFormatter

            ax.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(min(pos))))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.set_ylim(bottom=0, top=max(ys_all) * 1.6)
        else:
            ax.set_ylim(bottom=min(0.0, *ys_all), top=max(ys_all) * 1.12 + 1e-9)
        if len(series) > 1:
            ax.set_title(ser, fontsize=9, loc="left")
        ax.set_ylabel(ylabel + "  ↓ better privacy")
        ax.set_xlabel(xlabel + "  → better utility")
    for k in range(len(series), nrow * ncol):
        axes[k // ncol][k % ncol].set_visible(False)
    fig.tight_layout()
    _place_labels(fig, labels, mid, colors)
    return _png(fig)


def _place_labels(fig: Any, labels: list[tuple[Any, Point]], mid: float, colors: dict) -> None:
    """Method names beside their points, moved to the first free spot so they do not overlap
    (nearby methods are common: blur17 and original both keep most faces detectable)."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    placed: dict[int, list[Any]] = {}
    for ax, p in labels:  # the markers themselves are taken first
        x, y = ax.transData.transform((p.x, p.y))
        placed.setdefault(id(ax), []).append(Bbox.from_extents(x - 6, y - 6, x + 6, y + 6))
    for ax, p in labels:
        right = p.x > mid  # labels point inwards so they stay inside the axes
        sx = -1 if right else 1
        boxes = placed.setdefault(id(ax), [])
        ann = None
        for dx, dy in [(7, 5), (7, -13), (-7, 5), (-7, -13), (0, 14), (0, -22), (7, 18), (7, -26)]:
            if ann is not None:
                ann.remove()
            ann = ax.annotate(
                one_line(p.method),
                (p.x, p.y),
                xytext=(sx * dx, dy),
                textcoords="offset points",
                ha=("right" if right else "left") if dx else "center",
                fontsize=8,
                color=colors.get(p.method, "#333"),
            )
            bb = ann.get_window_extent(renderer).expanded(1.05, 1.15)
            if not any(bb.overlaps(b) for b in boxes):
                break
        assert ann is not None
        boxes.append(ann.get_window_extent(renderer))


def fid_png(
    ours: dict[str, tuple[float, float | None, float | None]],
    paper: dict[str, float],
    colors: dict[str, str],
) -> bytes:
    """FID per method (ours with its interval; the paper's value as a hatched bar beside)."""
    plt = _plt()
    methods = list(ours) + [m for m in paper if m not in ours]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(methods) + 1.5), 3.4))
    x = np.arange(len(methods))
    w = 0.38 if paper else 0.6
    # a non-finite value is no bar (NaN is skipped by matplotlib, +-inf breaks the axis)
    vals = [ours.get(m, (math.nan, None, None))[0] for m in methods]
    vals = [v if math.isfinite(v) else math.nan for v in vals]
    errs = np.array([_err(*ours[m]) if m in ours else [0.0, 0.0] for m in methods], dtype=float).T
    ax.bar(
        x - (w / 2 if paper else 0),
        vals,
        w,
        yerr=errs,
        capsize=3,
        color=[colors.get(m, "#0072B2") for m in methods],
        label="ours",
    )
    if paper:
        pv = [paper.get(m, math.nan) for m in methods]
        ax.bar(x + w / 2, pv, w, color="white", edgecolor="#555", hatch="//", label="paper")
        ax.legend(frameon=False, fontsize=8)
    finite = [v for v in [*vals, *paper.values()] if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 50:
        ax.set_yscale("log")  # pixelation (~500) and a good GAN (~2) on one axis
    ax.set_xticks(x, methods, rotation=20, ha="right")
    ax.set_ylabel("FID  ↓")
    return _png(fig)
