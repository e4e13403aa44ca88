"""``sevis report``: one standalone HTML page with the paper's figures for a saved run.

Built from the same figure functions as the dashboard: per-class excitation profiles
for the six blocks the SENet paper shows (with +- std bands), class-wise histograms,
class-specificity against depth, and SGE mask statistics per class.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from . import figures
from .runs import Run, read_run

__all__ = ["build_report", "write_report"]


def build_report(run: Run, classes: Sequence[str] | None = None, layers: Sequence[str] | None = None) -> str:
    """The report page as HTML text (plotly.js inlined once)."""
    m = run.metadata
    known = run.se.classes or run.sge.classes
    classes = list(classes) if classes else known[:8]
    missing = [c for c in classes if c not in known]
    if missing:
        raise ValueError(f"classes {missing} not in the run; it has {known}")
    se_layers = [l for l in (layers or figures.PAPER_LAYERS) if l in run.se.layers]
    sge_layers = [l for l in (layers or ("SGE_2_3", "SGE_3_4", "SGE_4_6", "SGE_5_3")) if l in run.sge.layers]
    if layers and not (se_layers or sge_layers):
        raise ValueError(f"none of the layers {list(layers)} is in the run")

    figs: list[go.Figure] = []
    for layer in se_layers:
        channels = figures.sample_channels(len(run.se.mean(layer)), 50)
        figs.append(figures.class_profiles(run.se, layer, classes, channels=channels, band=True))
        figs.append(figures.class_histograms(run.se, layer, classes))
    if len(run.se.classes) > 1:
        figs.append(figures.specificity_curve({m["model"]: run.se}))
    figs += [figures.mask_class_stats(run.sge, layer, classes) for layer in sge_layers]
    if m["untrained"]:
        figs = [figures.mark_untrained(f) for f in figs]

    stats = run.se if run.se.layers else run.sge
    counts = ", ".join(f"{html.escape(c)}: {stats.count(c)}" for c in classes)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>sevis report: {html.escape(m['model'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        ".warn{color:#b00020;font-weight:bold}td{padding:0 1em 0 0}</style></head><body>",
        f"<h1>sevis report: {html.escape(m['model'])}</h1>",
        "<table>",
        *(f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>" for k, v in (
            ("weights", m["weights"]), ("weights SHA-256", m.get("weights_sha256")), ("data", m["source"]),
            ("images", m.get("images")), ("unreadable files", len(run.failures)),
            ("classes shown", counts), ("sevis", m["sevis_version"]),
        )),
        "</table>",
    ]
    if m["untrained"]:
        parts.append(f"<p class='warn'>{figures.UNTRAINED_NOTE}</p>")
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0))
    if run.failures:
        parts.append("<h2>Unreadable files</h2><ul>")
        parts += [f"<li>{html.escape(f['path'])}: {html.escape(f['reason'])}</li>" for f in run.failures]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    run_path: str | Path, out: str | Path, classes: Sequence[str] | None = None, layers: Sequence[str] | None = None
) -> Path:
    out = Path(out)
    out.write_text(build_report(read_run(run_path, layers), classes, layers), encoding="utf-8")
    return out
