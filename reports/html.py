"""The HTML report: one self-contained file (images and plots inline as base64, no external
CSS/JS, a Content-Security-Policy that forbids loading anything), rendered with jinja2 with
autoescaping on, so names from result files cannot inject markup.

    write_report([Path("runs/lfw1"), Path("runs/celeba")], Path("report.html"))
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonbench.escape import html_escape, one_line
from anonbench.reports.compare import Comparison, build_comparisons
from anonbench.reports.paper import PaperStatement, statements_for
from anonbench.reports.runs import Bundle, ExampleSet, is_sample, load_runs, read_keys
from anonbench.reports.tables import WideTable, build_tables, no_evaluator

THUMB_PX = 112  # example faces are shown at this height: enough to judge, small file
THUMB_SCALE = 2  # stored at twice that, so they stay sharp on high-density screens


@dataclass
class Figure:
    title: str
    caption: str
    uri: str  # data:image/png;base64,...
    alt: str
    wide: bool = False  # several panels: give it the whole row


@dataclass
class MissedRow:
    method: str
    counts: list[tuple[str, str]]  # (label, "3/200")
    keys: list[str]
    more: int


@dataclass
class Section:
    table: WideTable
    comparisons: list[Comparison]
    figures: list[Figure]
    grids: list[ExampleSet]
    thumbs: dict[tuple[int, str, int], str]  # (grid, method, face) -> data URI
    missed: list[MissedRow]
    missed_note: str = ""
    grid_methods: list[list[str]] = field(default_factory=list)
    statements: list[PaperStatement] = field(default_factory=list)  # the paper, no number


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _thumb(path: Path, notes: list[str] | None = None) -> str | None:
    """An example image as a small JPEG data URI; None (and one line in `notes`) for a file
    that is not an image, declares too many pixels to decode (read from its header first) or
    is animated (only the first frame would show)."""
    from PIL import Image, UnidentifiedImageError

    from anonbench.data.images import DEFAULT_MAX_PIXELS

    def skip(why: str) -> None:
        if notes is not None:
            notes.append(f"example image {path}: {why}; not shown")

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > DEFAULT_MAX_PIXELS:
                return skip(f"declares {w}x{h} pixels, over {DEFAULT_MAX_PIXELS:,}")
            if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":
                return skip(f"animated ({im.n_frames} frames)")
            im = im.convert("RGB")
            w, h = im.size
            px = THUMB_PX * THUMB_SCALE
            if h > px:
                im = im.resize((max(1, round(w * px / h)), px), Image.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
    except Image.DecompressionBombError:
        return skip("declares more pixels than are safe to decode")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        return skip(f"cannot be decoded ({type(e).__name__})")
    return _uri(buf.getvalue(), "image/jpeg")


def _figures(
    bundle: Bundle, t: WideTable, colors: dict[str, str], dropped: list[str]
) -> list[Figure]:
    """The section's figures: privacy vs utility, ROC, FID (those the table can feed).
    Non-finite values (+-inf) are left out of them, each named in `dropped`."""
    figs = (
        _scatter_figure(t, colors, dropped),
        _roc_figure(bundle, t, colors),
        _fid_figure(t, colors, dropped),
    )
    return [f for f in figs if f is not None]


def _plottable(t: WideTable, m: str, i: int, dropped: list[str] | None) -> Any:
    """The cell of method `m` in column `i` if it can be drawn: None when absent or NaN (no
    value), or +-inf (the table shows it; an axis cannot hold it: named in `dropped`, unless
    None: the caller does not report them)."""
    c = t.cell(m, i)
    if c is None or math.isnan(c.value):
        return None
    if not math.isfinite(c.value):
        if dropped is not None:
            dropped.append(f"{m} {t.columns[i].metric}={c.value}")
        return None
    return c


def _scatter_points(
    t: WideTable, xi: int, ycols: list[int], derived: bool, dropped: list[str] | None = None
) -> list[Any]:
    """One point per method and y column; `derived`: x is 100·(1 − embedder_no_face/n)."""
    from anonbench.reports import plots

    points = []
    for m in t.methods:
        if m == "chance":
            continue
        xc = _plottable(t, m, xi, dropped)
        if xc is None:
            continue
        if derived:
            if not xc.n:
                continue
            x, xlo, xhi = 100.0 * (1.0 - xc.value / xc.n), None, None
        else:
            x, xlo, xhi = xc.value, xc.lo, xc.hi
        for yi in ycols:
            yc = _plottable(t, m, yi, dropped)
            if yc is None:
                continue
            ev = t.columns[yi].evaluator
            points.append(plots.Point(m, ev, x, yc.value, xlo, xhi, yc.lo, yc.hi))
    return points


def _chance_levels(
    t: WideTable, ycols: list[int], dropped: list[str] | None = None
) -> dict[str, float]:
    """Chance level per recognizer: a "chance" row per recognizer, or a column with evaluator
    "chance" shared by all."""
    chance: dict[str, float] = {}
    chance_cols = t.column_index(t.columns[ycols[0]].metric, "chance")
    shared = [
        c.value
        for i in chance_cols
        for m in t.methods
        if (c := _plottable(t, m, i, dropped)) is not None
    ]
    for yi in ycols:
        c = _plottable(t, "chance", yi, dropped)
        if c is not None:
            chance[t.columns[yi].evaluator] = c.value
        elif shared:
            chance[t.columns[yi].evaluator] = shared[0]
    return chance


def _scatter_figure(
    t: WideTable, colors: dict[str, str], dropped: list[str] | None = None
) -> Figure | None:
    """Privacy-utility scatter: y = Recall@1 (per recognizer) or TAR; x = detection rate, or
    the share of faces the recognizer's detector found where the protocol has no detection."""
    from anonbench.reports import plots

    ycols = [i for i in t.column_index("recall_at_1") if t.columns[i].evaluator != "chance"]
    ycols = ycols or t.column_index("tar_far_1e-3")
    xcols = t.column_index("detection_rate")
    derived = not xcols and bool(t.column_index("embedder_no_face"))
    if not ycols or not (xcols or derived):
        return None
    xi = xcols[0] if xcols else t.column_index("embedder_no_face")[0]
    points = _scatter_points(t, xi, ycols, derived, dropped)
    if not points:
        return None
    ylab = t.columns[ycols[0]].label
    if derived:
        xlab = "face found by the recognizer's detector (%)"
        how = (
            "x = 100·(1 − embedder_no_face/n): anonymized faces the recognizer's own "
            "detector still found (no detection-rate metric in this protocol)."
        )
    else:
        xlab = f"detection rate (%), {t.columns[xi].evaluator}"
        how = f"x = detection rate by {t.columns[xi].evaluator}."
    chance = _chance_levels(t, ycols, dropped)
    evs = ", ".join(dict.fromkeys(p.series for p in points))
    return Figure(
        "Privacy vs utility",
        f"One point per method, one panel per recognizer ({evs}); bars are the "
        "intervals of the table. Bottom right is best: hard to re-identify, still a "
        f"usable face. {how}",
        _uri(plots.scatter_png(points, colors, xlab, ylab, chance), "image/png"),
        f"scatter of {ylab} against {xlab}",
        wide=len({p.series for p in points}) > 1,
    )


def _roc_figure(bundle: Bundle, t: WideTable, colors: dict[str, str]) -> Figure | None:
    """ROC curves from the saved per-pair scores (verification protocols)."""
    from anonbench.reports import plots

    sfiles = bundle.scores_files(t.protocol, t.dataset)
    curves = [
        c
        for m in t.methods
        if m in sfiles and (c := plots.roc_from_scores(sfiles[m], m)) is not None
    ]
    if not curves:
        return None
    evs = ", ".join(t.columns[i].evaluator for i in t.column_index("tar_far_1e-3")) or "?"
    return Figure(
        "ROC (verification)",
        f"Pooled ROC of the saved pair scores (recognizer: {evs}); the table's TAR uses "
        "per-fold thresholds, so it can differ slightly from the curve at FAR=1e-3. "
        "Lower curves = better anonymization." + _far_note(sfiles.values()),
        _uri(plots.roc_png(curves, colors), "image/png"),
        "ROC curves per method",
    )


def _fid_figure(
    t: WideTable, colors: dict[str, str], dropped: list[str] | None = None
) -> Figure | None:
    """FID bars, with the paper's FID table (Table 4) beside where the protocol matches."""
    from anonbench.reports import plots
    from anonbench.reports.paper import for_protocol

    fcols = t.column_index("fid")
    if not fcols:
        return None
    i = fcols[0]
    ours = {
        m: (c.value, c.lo, c.hi)
        for m in t.methods
        if (c := _plottable(t, m, i, dropped)) is not None
    }
    by_table: dict[str, dict[str | None, float]] = {}
    for v in for_protocol(t.protocol):
        if v.metric == "fid":
            by_table.setdefault(v.table, {})[v.method] = v.value
    # the paper's FID table: the one with the most rows (Table 4, not Table 1's one row)
    table = max(by_table, key=lambda k: len(by_table[k]), default="")
    paper = {m: x for m, x in by_table.get(table, {}).items() if m is not None and m in ours}
    if not ours:
        return None
    return Figure(
        "FID",
        f"Fréchet Inception Distance ({t.columns[i].evaluator or 'Inception'}), "
        "lower = closer to real faces"
        + (f"; hatched: the paper's {table} (its own data and setup)." if paper else "."),
        _uri(plots.fid_png(ours, paper, colors), "image/png"),
        "FID per method",
    )


def _missed(bundle: Bundle, t: WideTable) -> tuple[list[MissedRow], str]:
    # the protocol's declared counts (faces missed, no face for the recognizer, unreadable...)
    count_cols = [i for i, c in enumerate(t.columns) if c.spec is not None and c.is_count]
    files = bundle.missed_files(t.protocol)
    if not count_cols and not files:
        return [], ""
    rows = []
    for m in t.methods:
        if m == "chance":  # a reference level, not an anonymizer
            continue
        counts = []
        for i in count_cols:
            col = t.columns[i]
            several = len(t.column_index(col.metric)) > 1
            label = f"{col.label} ({col.evaluator})" if several else col.label
            c = t.cell(m, i)
            counts.append((label, "" if c is None else c.text))
        keys = read_keys(files[m], bundle.warnings) if m in files else []
        rows.append(MissedRow(m, counts, keys[:60], max(0, len(keys) - 60)))
    note = "A missed face is returned unchanged and stays in the metrics: it is a leak." + (
        ""
        if files
        else " This run did not save which faces were missed (missed/<protocol>/METHOD.csv)"
        ", so only the counts are shown."
    )
    return rows, note


def _section(bundle: Bundle, t: WideTable, colors: dict[str, str], dropped: list[str]) -> Section:
    grids = bundle.example_sets(t.protocol, t.dataset)
    thumbs: dict[tuple[int, str, int], str] = {}
    grid_methods: list[list[str]] = []
    for gi, g in enumerate(grids):
        order = [m for m in t.methods if m in g.images] + [
            m for m in g.images if m not in t.methods
        ]
        grid_methods.append(order)
        for m in order:
            for fi, p in enumerate(g.images[m]):
                if p is not None and (u := _thumb(p, bundle.warnings)) is not None:
                    thumbs[(gi, m, fi)] = u
    missed, note = _missed(bundle, t)
    return Section(
        t,
        build_comparisons(t),
        _figures(bundle, t, colors, dropped),
        grids,
        thumbs,
        missed,
        note,
        grid_methods,
        statements_for(t.protocol),
    )


def _run_meta(bundle: Bundle) -> list[dict[str, Any]]:
    out = []
    for r in bundle.runs:
        df, info = r.results, r.info
        cfg = info.get("config") or {}
        proto = info.get("protocol") or {}
        datasets = [str(d) for d in dict.fromkeys(df["dataset"])]
        ck = {
            str(m): str(s)[:12]
            for m, s in zip(df["method"], df["checkpoint_sha256"], strict=True)
            if isinstance(s, str) and s and s != "nan"
        }
        timings = info.get("timings_s") or {}
        versions = info.get("versions") or {}
        pairs = zip(df["protocol"], df["protocol_version"], strict=True)
        protos = ", ".join(dict.fromkeys(f"{p} v{v}" for p, v in pairs))
        shas = {str(s) for s in df["git_sha"] if isinstance(s, str) and s}
        out.append(
            {
                "path": str(r.path),
                "protocols": protos or f"{proto.get('name', '?')} v{proto.get('version', '?')}",
                "datasets": [(d, is_sample(d)) for d in datasets],
                "data_root": cfg.get("data") or cfg.get("data_root") or "(embedded sample set)",
                "missing_files": (info.get("dataset") or {}).get("missing_files") or 0,
                "device": info.get("device"),
                "methods": r.methods,
                "checkpoints": ck,
                "evaluators": [
                    str(e) for e in dict.fromkeys(df["evaluator"]) if not no_evaluator(e)
                ],
                "command": command_line(cfg),
                "command_note": "the run file as resolved (flags applied) is in run.json: "
                "config.run_file"
                if run_file_source(cfg)
                else "rebuilt from run.json's configuration",
                "seeds": sorted({str(s) for s in df["seed"] if str(s) != "nan"}),
                "anonbench": ", ".join(sorted({str(v) for v in df["anonbench_version"]})),
                "git_sha": ", ".join(sorted(shas or {str(info.get("git_sha") or "unknown")})),
                # shown where it is not "finished" (an older run.json records none)
                "status": "" if info.get("status") in (None, "finished") else info["status"],
                "started": info.get("started_at", ""),
                "finished": info.get("finished_at", ""),
                "total_s": timings.get("total"),
                "timings": {k: v for k, v in timings.items() if k != "total"},
                "versions": versions,
                "options": {
                    k: cfg[k]
                    for k in ("embedder", "folds", "workers")
                    if k in cfg and cfg[k] is not None
                },
            }
        )
    return out


def _far_note(score_files: Any) -> str:
    """A caption sentence when too few impostor pairs make FAR = 1e-3 unreachable: a fold's
    threshold is chosen on the other folds' impostor pairs, so the smallest FAR above zero is
    1 / (their number)."""
    import pandas as pd

    counts = []
    for f in score_files:
        try:
            df = pd.read_csv(f, usecols=["fold", "label"])
        except Exception:  # an unreadable scores file is reported where it is read
            continue
        neg = df[df["label"] == 0].groupby("fold").size()
        if len(neg) > 1:
            counts += [int(neg.sum() - n) for n in neg]
        elif len(neg) == 1:
            counts.append(int(neg.iloc[0]))
    if not counts or min(counts) >= 1000:
        return ""
    n = min(counts)
    return (
        f" With {n} impostor pairs to choose each threshold on, the smallest non-zero FAR is "
        f"1/{n} = {1 / n:.1e}: FAR = 1e-3 cannot be reached, so TAR@FAR=1e-3 is the TAR at "
        "FAR = 0 (no impostor accepted)."
    )


def _option_defaults(protocol: str) -> dict[str, Any]:
    """name -> default of the registered protocol's options (empty for an unknown one)."""
    from anonbench.registry import PROTOCOLS

    try:
        return {o.name: o.default for o in PROTOCOLS.entry(protocol).factory.options}
    except Exception:  # an uninstalled plug-in: every option is shown
        return {}


# run.json config key -> the `anonbench run` flag that set it (flags left at their defaults, and
# those that do not change results, such as --quiet, are not shown)
_FLAGS = (
    ("data", "--data", None),
    ("out", "--out", None),
    ("embedder", "--embedder", "dlib-resnet"),
    ("seed", "--seed", 0),
    ("device", "--device", "cpu"),
    ("executor", "--executor", "local"),
)


def run_file_source(cfg: Any) -> str | None:
    """The run file a run.json configuration came from (None: flags only)."""
    rf = cfg.get("run_file") if isinstance(cfg, dict) else None
    source = rf.get("source") if isinstance(rf, dict) else None
    return str(source) if source else None


def command_line(cfg: dict[str, Any]) -> str:
    """The `anonbench run` command of a run.json configuration ("" when it has none)."""
    import shlex

    if not isinstance(cfg, dict) or not cfg.get("methods") or not cfg.get("protocol"):
        return ""
    source = run_file_source(cfg)
    if source:  # a run file: its command, the file as resolved (flags applied) is in run.json
        return f"anonbench run --config {shlex.quote(str(source))}"
    methods = cfg["methods"]
    parts = ["anonbench", "run", "--methods"]
    parts.append(",".join(map(str, methods)) if isinstance(methods, list) else str(methods))
    parts += ["--protocol", str(cfg["protocol"])]
    for key, flag, default in _FLAGS:
        v = cfg.get(key)
        if v is not None and v != default and v != "":
            parts += [flag, str(v)]
    checkpoints = cfg.get("checkpoints")
    for m, path in checkpoints.items() if isinstance(checkpoints, dict) else ():
        parts += ["--checkpoint", f"{m}={path}"]
    options = cfg.get("options")
    defaults = _option_defaults(str(cfg["protocol"]))
    for k, v in options.items() if isinstance(options, dict) else ():
        if k in defaults and defaults[k] == v:
            continue  # left at its default
        text = str(v).lower() if isinstance(v, bool) else str(v)
        parts += ["--option", f"{k}={text}"]
    return " ".join(shlex.quote(p) for p in parts)


def render_html(run_dirs: list[Path], bundle: Bundle | None = None) -> str:
    """The report as one HTML string (`bundle`: run_dirs already loaded)."""
    import jinja2

    from anonbench import __version__
    from anonbench.reports.plots import method_colors
    from anonbench.reports.summary import build_summary

    bundle = bundle or load_runs([Path(p) for p in run_dirs])
    tables = build_tables(bundle)
    colors = method_colors([m for t in tables for m in t.methods])
    dropped: list[str] = []
    sections = [_section(bundle, t, colors, dropped) for t in tables]
    if dropped:
        # the table shows them as they are; an axis cannot hold an infinity
        names = list(dict.fromkeys(dropped))
        note = f"{len(names)} non-finite values were left out of the plots ({', '.join(names)})"
        print(f"warning: {one_line(note)}", file=sys.stderr)
        bundle.warnings.append(note)
    samples = sorted({t.dataset for t in tables if t.sample})
    # every value goes through the one HTML escaping function (anonbench.escape, rule 5)
    env = jinja2.Environment(
        autoescape=True, finalize=html_escape, undefined=jinja2.StrictUndefined
    )
    env.filters["fmt_s"] = _fmt_seconds
    tpl = env.from_string(TEMPLATE)
    return tpl.render(
        summary=build_summary(tables),
        sections=sections,
        runs=_run_meta(bundle),
        samples=samples,
        warnings=bundle.warnings,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        css=CSS,
    )


def write_report(run_dirs: list[Path], out_html: Path, bundle: Bundle | None = None) -> Path:
    """Writes the self-contained HTML report of `run_dirs` to `out_html`; returns its path."""
    from anonbench.reports.runs import write_shared_text

    return write_shared_text(Path(out_html), render_html(run_dirs, bundle))


def write_run_report(run_dir: Path) -> Path | None:
    """For the end of `anonbench run`: writes run_dir/report.html. A finished run must not
    fail because its report could not be drawn, so errors become one warning line."""
    try:
        return write_report([Path(run_dir)], Path(run_dir) / "report.html")
    except Exception as e:  # the results are already on disk; the report is a convenience
        print(f"warning: report.html not written: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def _fmt_seconds(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict):  # per-method stages: {"produce": s, "evaluate": s}
        return " + ".join(f"{k} {_fmt_seconds(x)}" for k, x in v.items())
    try:
        s = float(v)
    except (TypeError, ValueError):
        return str(v)
    if s < 90:
        return f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


CSS = """
:root { --ink:#1d2430; --mute:#5b6573; --line:#dfe3ea; --bg:#f6f7f9; --best:#e3f4e8;
        --bestink:#0b6b2c; --warn:#fff4d6; --warnline:#e0b040; --accent:#0b5cad; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
       sans-serif; color:var(--ink); background:var(--bg); }
header { background:#182433; color:#fff; padding:18px 32px 14px; }
header h1 { margin:0; font-size:22px; font-weight:600; letter-spacing:.2px; }
header .sub { color:#b8c4d4; font-size:12.5px; margin-top:4px; }
header nav { margin-top:10px; font-size:13px; }
header nav a { color:#cfe2ff; margin-right:14px; text-decoration:none; }
main { max-width:1240px; margin:0 auto; padding:18px 32px 48px; }
section.card { background:#fff; border:1px solid var(--line); border-radius:8px;
               padding:16px 20px 18px; margin:18px 0; }
h2 { font-size:18px; margin:0 0 10px; }
h3 { font-size:14.5px; margin:18px 0 8px; color:#2b3442; }
.banner { background:var(--warn); border:1px solid var(--warnline); border-radius:8px;
          padding:10px 14px; margin:16px 0 0; }
.badge { display:inline-block; font-size:11px; font-weight:600; padding:1px 7px;
         border-radius:10px; vertical-align:middle; margin-left:6px; }
.badge.sample { background:#ffe3a3; color:#6a4a00; }
.badge.full { background:#d9ecff; color:#0b4a8a; }
.badge.same { background:var(--best); color:var(--bestink); }
.badge.diff { background:#eee; color:#555; }
table { border-collapse:collapse; font-variant-numeric: tabular-nums; }
table.res { width:100%; }
table.res th, table.res td { padding:6px 10px; border-bottom:1px solid var(--line);
                             text-align:right; vertical-align:top; }
table.res th { background:#f0f3f7; font-weight:600; font-size:12.5px; }
table.res th.grp { border-bottom:1px solid #c9d1dc; }
table.res th.ev { font-weight:500; color:var(--mute); font-size:11.5px; }
table.res th:first-child, table.res td:first-child { text-align:left; }
table.res td.m { font-weight:600; white-space:nowrap; }
table.res tr.ref td { background:#fafbfc; color:#3a4452; }
table.res tr.ref td.m { font-weight:500; font-style:italic; }
table.res td.best { background:var(--best); color:var(--bestink); font-weight:700; }
table.res td .iv { display:block; font-size:11px; color:var(--mute); font-weight:400; }
table.res td.na { color:#aab; }
td.paper, th.paper { background:#fbf8f1; }
.arrow { color:var(--accent); font-weight:700; }
.legend, .note, .caption { color:var(--mute); font-size:12.5px; }
.legend { margin-top:6px; }
ul.notes { margin:6px 0 0 18px; padding:0; color:#7a4b00; font-size:12.5px; }
dl.desc { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:8px 0 0;
          font-size:12.5px; color:var(--mute); }
dl.desc dt { font-weight:600; color:var(--ink); }
dl.desc dd { margin:0; }
.figs { display:flex; flex-wrap:wrap; gap:18px; }
figure { margin:0; flex:1 1 460px; max-width:640px; }
figure.wide { flex-basis:100%; max-width:1000px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px;
             background:#fff; }
figcaption { font-size:12px; color:var(--mute); margin-top:4px; }
figcaption b { color:var(--ink); }
.grid { overflow-x:auto; }
.scroll { overflow-x:auto; max-width:100%; }
code.cmd { white-space:pre-wrap; word-break:break-all; }
.folds { font-size:13px; font-weight:500; color:var(--mute); }
.grid table td, .grid table th { padding:3px; text-align:center; }
.grid th.face { font-size:11px; font-weight:500; color:var(--mute); max-width:118px;
                overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.grid td.m { text-align:right; font-weight:600; padding-right:10px; white-space:nowrap; }
.grid img { height:112px; width:auto; display:block; border-radius:4px; }
.grid .missing { width:112px; height:112px; background:#eee; color:#999; font-size:11px;
                 display:flex; align-items:center; justify-content:center; border-radius:4px; }
table.kv td { padding:3px 12px 3px 0; vertical-align:top; font-size:13px; }
table.kv td:first-child { color:var(--mute); white-space:nowrap; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:12px; }
.keys { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:11.5px;
        color:#444; }
.runs { display:grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap:16px; }
details summary { cursor:pointer; color:var(--accent); font-size:12.5px; }
footer { color:var(--mute); font-size:12px; text-align:center; padding:10px; }
@media (max-width: 600px) {
  header { padding:14px 12px 10px; }
  main { padding:10px 6px 32px; }
  section.card { padding:10px 8px 12px; margin:10px 0; }
  .runs { grid-template-columns: 1fr; }
  table.res { font-size:11px; }
  table.res th, table.res td { padding:3px 3px; }
  table.res th { font-size:10.5px; overflow-wrap:anywhere; }
  table.res th.ev { font-size:10px; }
  table.res td .iv { font-size:9.5px; }
  table.res td.m { white-space:normal; overflow-wrap:anywhere; }
  dl.desc { grid-template-columns: 1fr; }
  figure { flex-basis:100%; }
  table.kv td { overflow-wrap:anywhere; }
}
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>anonbench report{% if samples %} (SAMPLE DATA){% endif %}</title>
<style>{{ css | safe }}</style>
</head>
<body>
<header>
  <h1>anonbench report</h1>
  <div class="sub">{{ runs | length }} run folder{{ 's' if runs | length != 1 }}
    · generated {{ generated }} · anonbench {{ version }}</div>
  <nav>
  {%- if summary %}<a href="#summary">summary</a>{% endif %}
  {%- for s in sections %}<a href="#{{ s.table.anchor }}">{{ s.table.title }}</a>{% endfor -%}
  <a href="#runs">run metadata</a>
  </nav>
</header>
<main>
{% if samples %}
<div class="banner" id="sample-banner"><b>Sample data.</b> Results on
  {% for d in samples %}<code>{{ d }}</code>{{ ", " if not loop.last }}{% endfor %}
  come from the small embedded sample set, not the full protocol: they show that the pipeline
  works, they are not numbers to cite.</div>
{% endif %}
{% for w in warnings %}<div class="banner">{{ w }}</div>{% endfor %}

{% if summary %}
<section class="card" id="summary">
  <h2>Summary <span class="note">headline metrics of every section below</span></h2>
  <div class="scroll"><table class="res">
    <thead>
    <tr><th rowspan="2">method</th>{% for sc in summary.columns %}
      <th class="grp"><a href="#{{ sc.table.anchor }}">{{ sc.heading }}</a></th>{% endfor %}</tr>
    <tr>{% for sc in summary.columns %}<th class="ev" title="{{ sc.column.description }}">
      {{- sc.column.label }}
      {%- if sc.column.evaluator not in ('-', '') %} [{{ sc.column.evaluator }}]{% endif %}
      {%- if sc.column.arrow %} <span class="arrow">{{ sc.column.arrow }}</span>{% endif %}</th>
      {%- endfor %}</tr>
    </thead>
    <tbody>
    {%- for m in summary.methods %}
    <tr><td class="m">{{ m }}</td>
      {%- for sc in summary.columns %}{% set c = sc.cell(m) %}
      {%- if c is none %}<td class="na">–</td>
      {%- else %}<td class="{{ 'best' if c.best }}{{ ' na' if c.text == 'n/a' }}">{{ c.text }}
        {%- if c.interval %}<span class="iv">{{ c.interval }}</span>{% endif %}</td>
      {%- endif %}{% endfor %}</tr>
    {%- endfor %}
    </tbody>
  </table></div>
  <div class="legend">Per section: its first privacy metric and its first utility or realism
    metric, copied from the section (same values, intervals and green best marks).</div>
</section>
{% endif %}

{% for s in sections %}{% set t = s.table %}
<section class="card" id="{{ t.anchor }}">
  <h2>{{ t.protocol }} <span class="note">v{{ t.version }}</span> · {{ t.dataset }}
    {%- if t.split %} <span class="note">({{ t.split }})</span>{% endif %}
    {%- if t.folds %} · <span class="folds">{{ t.folds }}</span>{% endif %}
    {%- if t.sample %}<span class="badge sample">sample, not the full protocol</span>
    {%- else %}<span class="badge full">full dataset</span>{% endif %}</h2>
  {% if t.common_evaluator is not none %}<div class="note" style="margin-bottom:6px">
    evaluator (every column): <b>{{ t.common_evaluator }}</b></div>{% endif %}
  <div class="scroll"><table class="res">
    <thead>{% set one_ev = t.common_evaluator %}
    <tr><th{% if one_ev is none %} rowspan="2"{% endif %}>method</th>
    {%- for col, span in t.header_groups() %}
      <th class="grp" colspan="{{ span }}" title="{{ col.description }}">{{ col.label }}
      {%- if col.arrow %} <span class="arrow">{{ col.arrow }}</span>{% endif %}</th>
    {%- endfor %}</tr>
    {% if one_ev is none %}
    <tr>{% for col in t.columns %}<th class="ev">
      {{- '' if col.evaluator in ('-', '') else col.evaluator }}</th>{% endfor %}</tr>
    {% endif %}
    </thead>
    <tbody>
    {%- for m in t.methods %}
    <tr{% if t.is_reference(m) %} class="ref"{% endif %}><td class="m">{{ m }}</td>
      {%- for col in t.columns %}{% set c = t.cell(m, loop.index0) %}
      {%- if c is none %}<td class="na">–</td>
      {%- else %}<td class="{{ 'best' if c.best }}{{ ' na' if c.text == 'n/a' }}"
        {%- if c.note %} title="{{ c.note }}"{% endif %}>{{ c.text }}
        {%- if c.interval %}<span class="iv">{{ c.interval }}
        {%- if c.interval_kind == 'std' and c.n %} · N {{ c.n | int }}{% endif %}</span>
        {%- endif %}</td>
      {%- endif %}{% endfor %}</tr>
    {%- endfor %}
    </tbody>
  </table></div>
  <div class="legend"><span class="arrow">↑</span> higher is better,
    <span class="arrow">↓</span> lower is better (for privacy metrics: better anonymization);
    {%- if t.any_best %} green = best anonymizer per column (references <i>original</i> and
    <i>chance</i> excluded).{% endif %}
    ± = std over {{ 'the ' ~ t.folds if t.folds else 'folds' }} (N = pairs or images scored),
    [a, b] = 95% interval; counts are <i>value/n</i>.</div>
  {% if t.notes %}<ul class="notes">{% for n in t.notes %}<li>{{ n }}</li>{% endfor %}</ul>
  {% endif %}
  <dl class="desc">
  {%- for col, span in t.header_groups() %}{% if col.description %}
    <dt>{{ col.label }}</dt><dd>{{ col.description }}</dd>{% endif %}{% endfor %}
  </dl>

  {% if s.figures %}<h3>Plots</h3>
  <div class="figs">
  {%- for f in s.figures %}
    <figure{% if f.wide %} class="wide"{% endif %}><img src="{{ f.uri }}" alt="{{ f.alt }}">
      <figcaption><b>{{ f.title }}.</b> {{ f.caption }}</figcaption></figure>
  {%- endfor %}
  </div>{% endif %}

  {% for cmp in s.comparisons %}
  <h3>Published numbers: {{ cmp.label }} <span class="arrow">{{ cmp.arrow }}</span></h3>
  <table class="res">
    <thead>
    <tr><th rowspan="2">method</th>
      {%- for c, span in cmp.source_groups() %}<th class="grp {{ 'paper' if c.kind == 'paper' }}"
        colspan="{{ span }}" style="text-align:center">{{ c.source }}</th>{% endfor %}</tr>
    <tr>{% for c in cmp.columns %}<th class="ev {{ 'paper' if c.kind == 'paper' }}">{{ c.header }}
      {%- if c.kind == 'paper' %}{% if c.same_model %}<span class="badge same">same model</span>
      {%- else %}<span class="badge diff">other model</span>{% endif %}{% endif %}</th>
      {%- endfor %}</tr>
    </thead>
    <tbody>
    {%- for r in cmp.rows %}<tr><td class="m">{{ r.label }}</td>
      {%- for v in r.cells %}<td class="{{ 'paper' if cmp.columns[loop.index0].kind == 'paper' }}">
        {{- v if v else '–' }}</td>{% endfor %}</tr>
    {%- endfor %}
    </tbody>
  </table>
  <div class="legend">Paper: CIAGAN (Maximov et al., CVPR 2020), evaluated on
    {{ cmp.paper_dataset }}; every column names its evaluator.</div>
  {% if cmp.notes %}<ul class="notes">{% for n in cmp.notes %}<li>{{ n }}</li>{% endfor %}</ul>
  {% endif %}
  {% endfor %}

  {% for st in s.statements %}
  <h3>Published: no number for this protocol</h3>
  <p class="note">{{ st.text }} <span class="iv">Source: {{ st.source }}.</span></p>
  {% endfor %}

  {% if s.missed %}
  <h3>Faces missed by each anonymizer</h3>
  <table class="res" style="width:auto">
    {% set with_keys = s.missed | selectattr('keys') | list | length > 0 %}
    <thead><tr><th>method</th>{% for lab, _ in s.missed[0].counts %}<th>{{ lab }}</th>
      {% endfor %}{% if with_keys %}<th>missed faces (keys)</th>{% endif %}</tr></thead>
    <tbody>{% for r in s.missed %}<tr><td class="m">{{ r.method }}</td>
      {%- for _, v in r.counts %}<td>{{ v }}</td>{% endfor %}
      {%- if with_keys %}
      <td class="keys" style="text-align:left">{{ r.keys | join(', ') if r.keys else '–' }}
      {%- if r.more %} … and {{ r.more }} more{% endif %}</td>{% endif %}</tr>{% endfor %}</tbody>
  </table>
  <div class="legend">{{ s.missed_note }}</div>
  {% endif %}

  {% for g in s.grids %}{% set gi = loop.index0 %}
  <h3>Example faces{% if s.grids | length > 1 %} ({{ loop.index }}){% endif %}</h3>
  <div class="grid"><table>
    <tr><th></th>{% for ident in g.identities %}<th class="face" title="{{ g.keys[loop.index0] }}">
      {{- ident or g.keys[loop.index0] }}</th>{% endfor %}</tr>
    {%- for m in s.grid_methods[gi] %}
    <tr><td class="m">{{ m }}</td>
      {%- for k in g.keys %}{% set u = s.thumbs.get((gi, m, loop.index0)) %}
      <td>{% if u %}<img src="{{ u }}" alt="{{ m }}: {{ k }}">
      {%- else %}<div class="missing">missing</div>{% endif %}</td>{% endfor %}</tr>
    {%- endfor %}
  </table></div>
  <div class="legend">The same faces for every method (one row per method), so a reader sees
    what the numbers mean.</div>
  {% endfor %}
</section>
{% endfor %}

<section class="card" id="runs">
  <h2>Run metadata</h2>
  <div class="runs">
  {% for r in runs %}
  <div>
  <h3 class="mono">{{ r.path }}</h3>
  <table class="kv">
    <tr><td>protocol</td><td>{{ r.protocols }}</td></tr>
    {% if r.status %}<tr><td>status</td><td><span class="badge sample">{{ r.status }}</span>
      <span class="note">the run did not finish: its results are partial</span></td></tr>
    {% endif %}
    {% if r.command %}<tr><td>command</td><td><code class="cmd">{{ r.command }}</code>
      <div class="note">{{ r.command_note }}</div></td></tr>{% endif %}
    <tr><td>data</td><td>{% for d, smp in r.datasets %}<code>{{ d }}</code>
      {%- if smp %}<span class="badge sample">sample</span>{% else %}
      <span class="badge full">full</span>{% endif %} {% endfor %}
      <span class="note">root: {{ r.data_root }}</span>
      {%- if r.missing_files %} <span class="badge sample">{{ r.missing_files }} files
      listed in the dataset are missing (left out)</span>{% endif %}</td></tr>
    {% if r.device %}<tr><td>device</td><td>{{ r.device }}</td></tr>{% endif %}
    <tr><td>methods</td><td>{{ r.methods | join(', ') }}</td></tr>
    {% if r.checkpoints %}<tr><td>checkpoints</td><td class="mono">
      {%- for m, sha in r.checkpoints.items() %}{{ m }}: {{ sha }}…{{ '; ' if not loop.last }}
      {%- endfor %}</td></tr>{% endif %}
    <tr><td>evaluators</td><td>{{ r.evaluators | join(', ') }}</td></tr>
    <tr><td>seeds</td><td>{{ r.seeds | join(', ') }}</td></tr>
    {% if r.options %}<tr><td>options</td><td>{% for k, v in r.options.items() %}{{ k }}={{ v }}
      {{- ', ' if not loop.last }}{% endfor %}</td></tr>{% endif %}
    <tr><td>anonbench</td><td>{{ r.anonbench }} · git <span class="mono">{{ r.git_sha }}</span>
      </td></tr>
    <tr><td>when</td><td>{{ r.started }}{% if r.finished %} → {{ r.finished }}{% endif %}
      {%- if r.total_s is not none %} ({{ r.total_s | fmt_s }}){% endif %}</td></tr>
    {% if r.timings %}<tr><td>time per method</td><td>{% for k, v in r.timings.items() %}
      {{- k }} {{ v | fmt_s }}{{ ', ' if not loop.last }}{% endfor %}</td></tr>{% endif %}
    {% if r.versions %}<tr><td>versions</td><td class="mono">
      {%- for k, v in r.versions.items() %}{{ k }} {{ v }}{{ ' · ' if not loop.last }}
      {%- endfor %}</td></tr>{% endif %}
  </table>
  </div>
  {% endfor %}
  </div>
</section>
</main>
<footer>anonbench {{ version }} · reports read result files and never recompute metrics</footer>
</body>
</html>
"""
