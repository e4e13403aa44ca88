"""``sevis report``: one standalone HTML page with the paper's figures for a saved run.

Built from the same figure functions as the dashboard, for each kind of attention in the run:
its own figures (for SE, per-class excitation profiles of the blocks the SENet paper
shows, with +- std bands, and class-wise histograms; for SGE, per-group mask
statistics of each stage's last block, and the distributions of its group activations
before and after SGE where the run keeps them), and class-specificity against depth.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from . import figures
from ._files import write_atomic
from .analysis.modules import compare_ablations, module_curves
from .attention.kinds import get_kind
from .attention.layers import prefix_of
from .errors import RunError
from .models.classes import class_candidates, class_indices, imagenet_names
from .runs.reader import Run, read_run
from .runs.schema import check_text_columns, open_run_file

__all__ = [
    "ABLATION_COLUMNS",
    "build_comparison",
    "build_report",
    "read_ablation",
    "resolve_classes",
    "write_comparison",
    "write_report",
]


def build_report(
    run: Run, classes: Sequence[str] | None = None, layers: Sequence[str] | None = None, baseline: Run | None = None
) -> str:
    """The report page as HTML text (plotly.js inlined once).

    Args:
        baseline: a run of the same images through the same architecture untrained
            (``sevis extract ... --weights untrained``): its class-specificity is drawn
            beside the run's, with the difference per layer (what training put there).

    Raises:
        RunError: a class asked for is not in the run; a baseline of another network,
            other images, or trained weights.
    """
    m = run.metadata
    if baseline is not None:
        _check_baseline(run, baseline)
    classes = _classes_shown(run, classes)
    parts = _head(f"sevis report: {m.model}")
    parts += _run_section(run, classes, layers, baseline, f"sevis report: {m.model}", first=True)
    parts.append("</body></html>")
    return "\n".join(parts)


def build_comparison(
    runs: Sequence[Run],
    classes: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    ablations: Sequence[pd.DataFrame] | None = None,
) -> str:
    """One page for several runs of the same images through different networks (or
    checkpoints): every module's class-specificity and saturation against depth on one chart
    (:func:`sevis.figures.module_depth_curves`), their ablations side by side where given,
    then each run's own section.

    Args:
        ablations: one table of ``sevis ablate`` per run, in the runs' order (each network
            over the same images).

    Raises:
        RunError: fewer than two runs, runs of other images than the first's, or ablations
            that are not one per run.
    """
    if len(runs) < 2:
        raise RunError("a comparison needs at least two runs")
    for other in runs[1:]:
        _check_same_images(runs[0], other, "run")
    names = _run_names(runs)
    shown = _classes_shown(runs[0], classes)
    curves = module_curves(dict(zip(names, runs, strict=True)))
    whose = {id(stats): (run, kind) for run in runs for kind, stats in run.stats.items()}
    nulls = {
        label: whose[id(stats)][0].null_bands(whose[id(stats)][1])
        for label, stats in curves.items()
        if len(stats.classes) > 1
    }
    title = f"sevis: {len(runs)} networks on the same images"
    parts = _head(title)
    parts.append(f"<h1>{html.escape(title)}</h1>")
    depth = figures.module_depth_curves(curves, nulls)
    parts.append(depth.to_html(full_html=False, include_plotlyjs=True))
    if ablations is not None:
        if len(ablations) != len(runs):
            raise RunError(f"{len(ablations)} ablation tables for {len(runs)} runs: give one per run, in their order")
        try:
            compared = compare_ablations(dict(zip(names, ablations, strict=True)))
        except ValueError as err:
            raise RunError(f"the ablations do not compare: {err}") from None
        parts.append(figures.ablation_comparison(compared).to_html(full_html=False, include_plotlyjs=False))
        metric = "top1" if int(compared["images"].iloc[0]) else "top1_kept"
        table = compared.pivot(index="condition", columns="network", values=metric)
        parts.append(table.loc[compared.condition.unique(), names].to_html(float_format=lambda v: f"{v:.2%}"))
    for name, run in zip(names, runs, strict=True):
        parts += _run_section(run, shown, layers, None, name, first=False, level=2)
    parts.append("</body></html>")
    return "\n".join(parts)


ABLATION_COLUMNS = ("condition", "layers", "images", "top1", "top5", "top1_change", "top1_kept")
"""What a table of ``sevis ablate`` must have for :func:`build_comparison`."""


def read_ablation(path: str | Path) -> pd.DataFrame:
    """A table ``sevis ablate`` wrote (``.csv`` or ``.parquet``).

    Raises:
        RunError: not such a table (the message names the first missing column).
    """
    path = Path(path)
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise RunError(f"{path.name[:100]}: not a readable table ({str(err)[:200]})") from None
    missing = [c for c in ABLATION_COLUMNS if c not in frame]
    if missing or frame.empty:
        raise RunError(f"{path.name[:100]}: not a table of `sevis ablate` (no {missing[0] if missing else 'rows'})")
    return frame


def _run_names(runs: Sequence[Run]) -> list[str]:
    """Each run's network, with its weights file's name where one network comes twice, and
    its place among the runs where that still leaves two alike (the same weights twice)."""
    models = [run.metadata.model for run in runs]
    names = [
        f"{run.metadata.model} ({Path(run.metadata.weights).name[:60]})"
        if models.count(run.metadata.model) > 1
        else model
        for model, run in zip(models, runs, strict=True)
    ]
    return [f"{name} (run {i + 1})" if names.count(name) > 1 else name for i, name in enumerate(names)]


def _classes_shown(run: Run, classes: Sequence[str] | None) -> list[str]:
    known = next((s.classes for s in run.stats.values() if s.layers), [])
    return resolve_classes(classes, known) if classes else known[:8]


def _head(title: str) -> list[str]:
    return [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        (
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            ".warn{color:#b00020;font-weight:bold}td{padding:0 1em 0 0}</style></head><body>"
        ),
    ]


def _run_section(
    run: Run,
    classes: Sequence[str],
    layers: Sequence[str] | None,
    baseline: Run | None,
    title: str,
    *,
    first: bool,
    level: int = 1,
) -> list[str]:
    """One run's table, warnings, figures and unreadable files; ``first``: the page's first
    figures (plotly.js inlined with them)."""
    m = run.metadata
    stats_by_kind = {k: s for k, s in run.stats.items() if s.layers}

    figs: list[go.Figure] = []
    for kind_name, stats in stats_by_kind.items():
        kind = get_kind(kind_name)
        shown = [name for name in layers if name in stats.layers] if layers else kind.shown_layers(stats.layers)
        for layer in shown:
            figs += figures.kind_figures(kind, stats, layer, classes)
        if len(stats.classes) > 1:
            curves, nulls, difference = {m.model: stats}, {m.model: run.null_bands(kind_name)}, None
            base_stats = baseline.stats.get(kind_name) if baseline is not None else None
            if baseline is not None and base_stats is not None and base_stats.layers:
                name = "untrained"
                curves[name], nulls[name], difference = base_stats, baseline.null_bands(kind_name), (m.model, name)
            label = prefix_of(stats.layers) or kind.prefix  # ECA's gates are of SE's kind
            figs.append(figures.specificity_curve(curves, label, nulls, difference))
            figs.append(figures.selectivity_distribution(stats, stats.layers))
    if m.untrained:
        figs = [figures.mark_untrained(f) for f in figs]

    counted = next(iter(stats_by_kind.values()), None)
    counts = ", ".join(f"{html.escape(c)}: {counted.count(c)}" for c in classes) if counted else ""
    parts = [
        f"<h{level}>{html.escape(title)}</h{level}>",
        "<table>",
        *(
            f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in (
                ("weights", m.weights),
                ("weights SHA-256", _sha_line(run)),
                ("self-check on photographs", _check_line(m.self_check)),
                ("data", m.source),
                ("images", m.images),
                ("unreadable files", len(run.failures)),
                ("classes shown", counts),
                ("sevis", m.sevis_version),
            )
        ),
        "</table>",
    ]
    if m.untrained:
        parts.append(f"<p class='warn'>{figures.UNTRAINED_NOTE}</p>")
    elif m.self_check is not None and not m.self_check["passed"]:
        parts.append(
            "<p class='warn'>These weights failed the self-check on photographs: they do not classify the "
            "sample photographs as an ImageNet network does (wrong preprocessing, or trained on something else?).</p>"
        )
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first and i == 0))
    if run.failures:
        parts.append(f"<h{level + 1}>Unreadable files</h{level + 1}>")
        parts.append("<ul>")
        parts += [f"<li>{html.escape(f['path'])}: {html.escape(f['reason'])}</li>" for f in run.failures]
        parts.append("</ul>")
    return parts


def resolve_classes(asked: Sequence[str], known: Sequence[str]) -> list[str]:
    """The run's classes that ``asked`` name: a label of the run as it is, or an ImageNet
    class by any of its names, its WordNet id or its index, matched to the run's label for
    that class (``goldfish`` finds ``n01443537`` in a run of ImageNet's folders).

    Raises:
        RunError: a name that is no class of the run, or that several classes share (the
            message lists them).
    """
    names = imagenet_names()
    known_codes = class_indices(list(known), names)[0]
    found = []
    for label in asked:
        if label in known:
            found.append(label)
            continue
        index = int(class_indices([label], names)[0][0])
        matches = [k for k, code in zip(known, known_codes, strict=True) if index >= 0 and code == index]
        if len(matches) == 1:
            found.append(matches[0])
            continue
        shown = [k[:60] for k in known[:10]]
        candidates = class_candidates(label, names)
        if len(candidates) > 1:
            listed = "; ".join(f"{c[:60]} ({names.index(c)})" for c in candidates[:10])
            raise RunError(f"{label[:60]!r} names {len(candidates)} ImageNet classes: {listed}; give one by its index")
        raise RunError(f"class {label[:60]!r} is not in the run; it has {shown}{' …' if len(known) > 10 else ''}")
    return found


def _check_baseline(run: Run, baseline: Run) -> None:
    """A baseline must be the same architecture, untrained, over the same images."""
    m, b = run.metadata, baseline.metadata
    if not b.untrained:
        raise RunError(f"the baseline {baseline.path.name} was made with {b.weights[:100]}, not untrained weights")
    if b.model != m.model:
        raise RunError(f"the baseline is a run of {b.model[:100]}, the run one of {m.model[:100]}")
    _check_same_images(run, baseline, "baseline")


def _check_same_images(run: Run, other: Run, called: str) -> None:
    """``other`` must hold the images of ``run`` (its file paths), in any order."""
    for r in (run, other):  # before any path is decoded (the statistics may come from the cache)
        check_text_columns(r.path)
    ours, theirs = (open_run_file(r.path).read(columns=["path"]).column("path").to_pylist() for r in (run, other))
    if sorted(ours) != sorted(theirs):
        name = "the baseline" if called == "baseline" else f"the run {other.path.name[:100]}"
        raise RunError(
            f"{name} has other images than the run {run.path.name[:100]} ({len(theirs):,} against {len(ours):,}, "
            f"{len(set(ours) ^ set(theirs)):,} in one only): make it from the same data"
        )


def _sha_line(run: Run) -> str:
    """The weights' SHA-256, or what identifies weights that have none."""
    p = run.provenance
    if p.untrained:
        return f"untrained, seed {p.untrained_seed}" if p.untrained_seed is not None else "untrained (unseeded)"
    return p.weights_sha256 or "not recorded (weights from a model hub)"


def _check_line(check: dict | None) -> str:
    if check is None:
        return "not applicable"
    tops = ", ".join(f"{p['photo']}: {p['top5'][0]}" for p in check["photos"])
    return f"{'passed' if check['passed'] else 'FAILED'} ({tops})"


def write_report(
    run_path: str | Path,
    out: str | Path,
    classes: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    baseline: str | Path | None = None,
) -> Path:
    """Read a saved run (and its untrained ``baseline`` run) and write its report page to
    ``out``, whole or not at all (the previous page stays when the disk is full)."""
    base = read_run(baseline, layers) if baseline is not None else None
    return write_atomic(out, build_report(read_run(run_path, layers), classes, layers, base).encode("utf-8"))


def write_comparison(
    run_paths: Sequence[str | Path],
    out: str | Path,
    classes: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    ablations: Sequence[str | Path] | None = None,
) -> Path:
    """Read several saved runs of the same images (and ``sevis ablate``'s table of each) and
    write their one page (:func:`build_comparison`) to ``out``, whole or not at all."""
    runs = [read_run(path, layers) for path in run_paths]
    tables = [read_ablation(path) for path in ablations] if ablations else None
    return write_atomic(out, build_comparison(runs, classes, layers, tables).encode("utf-8"))
