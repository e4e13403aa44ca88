"""``sevis reproduce``: a paper's findings from a dataset in one command.

    sevis reproduce senet ILSVRC2012_img_val/ --labels ILSVRC2012_validation_ground_truth.txt \\
        --synsets meta.mat --out senet/

runs what the findings need into one folder, each step resumable:

1. ``run.parquet``: ``sevis extract`` with ``--per-class 50`` (the SENet paper's 50 images a class);
2. ``untrained.parquet``: the same images through the same architecture with random
   weights (seed 0), the baseline that says what training put there;
3. ``ablation.csv``: ``sevis ablate`` on the run's images (each stage's attention removed,
   then all of it), and ``ablation.json``, what it was made from (kept while that holds);
4. ``findings.json`` and ``report.html``: each finding with the paper's statement beside
   what this copy measured, and a verdict by a rule stated with it.

A stopped reproduction (Ctrl-C, SIGTERM, a full disk) is continued by the same command:
finished steps are kept, an interrupted extract resumes where it stopped.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from torch import nn

from . import export, figures
from ._files import write_atomic
from .attention.kinds import get_kind
from .attention.layers import paper_layers, parse_layer, stage_ends
from .attention.registry import find_attention
from .data.files import Item, iter_batches
from .data.labels import read_labels
from .errors import RunError, SevisError
from .hooks.forward import forward_batch
from .jobs.ablation import ablate_data, ablation_conditions
from .jobs.extraction import extract
from .jobs.settings import RunSettings
from .models.registry import load_model, model_info
from .report import resolve_classes
from .runs.reader import Run, read_run
from .runs.schema import read_metadata
from .stats import BIN_EDGES
from .stats.classes import ClassStats
from .stats.se import ExcitationStats

__all__ = ["PAPERS", "PLANES", "Finding", "Reproduction", "reproduce"]

log = logging.getLogger("sevis")

PLANES = {"airliner": 404, "warplane": 895, "plane": 726}
"""ImageNet's classes the SENet paper's "plane" could be (it gives no index): the airliner,
the warplane, and the carpenter's plane. :func:`reproduce` takes the airliner unless told."""

PAPERS = {
    "senet": {
        "title": "Squeeze-and-Excitation Networks (Hu, Shen, Albanie, Sun, Wu; TPAMI 2019, arXiv:1709.01507)",
        "model": "se_resnet50",
        "kind": "se",
        "top1": 77.6,
        "top5": None,
        "accuracy_source": "the authors' released SE-ResNet-50 (timm's legacy_seresnet50), 224-pixel centre crop",
    },
    "sge": {
        "title": "Spatial Group-wise Enhance (Li, Hu, Yang; arXiv:1905.09646)",
        "model": "sge_resnet50",
        "kind": "sge",
        "top1": 77.584,
        "top5": 93.664,
        "accuracy_source": "PytorchInsight's SGE-ResNet-50, 224-pixel centre crop",
    },
}
"""The papers ``sevis reproduce`` knows: their network, its kind of attention, and the
ImageNet accuracy they report for it."""

AGREES, DIFFERS, CANNOT_TELL, LOOK = "agrees", "differs", "cannot tell", "look at the figure"
FULL_SET = 10_000
"""Labelled images below which an accuracy is not compared with the paper's (50,000)."""


@dataclass
class Finding:
    """One of a paper's findings and what this copy measured.

    Attributes:
        key: a short name (``"saturation"``).
        title: what the finding is about.
        paper: the paper's statement.
        rule: how the verdict is decided, in words.
        measured: what was measured, in words.
        verdict: ``"agrees"``, ``"differs"``, ``"cannot tell"`` (with the reason in
            ``measured``) or ``"look at the figure"`` (a qualitative claim).
        numbers: the measured values (JSON-ready).
    """

    key: str
    title: str
    paper: str
    rule: str
    measured: str
    verdict: str
    numbers: dict[str, Any] = field(default_factory=dict)
    figures: list[go.Figure] = field(default_factory=list, repr=False)


@dataclass
class Reproduction:
    """What :func:`reproduce` made: the findings, and the folder holding the run, the
    baseline, the ablation, ``findings.json`` and ``report.html``."""

    paper: str
    folder: Path
    findings: list[Finding]

    @property
    def report(self) -> Path:
        """The standalone HTML page: the findings' table, then each with its figures."""
        return self.folder / "report.html"

    @property
    def numbers(self) -> Path:
        """The findings as JSON: statements, rules, verdicts and every number measured."""
        return self.folder / "findings.json"


def reproduce(
    paper: str,
    data: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    weights: str = "pretrained",
    labels: str | Path | None = None,
    synsets: str | Path | None = None,
    per_class: int = 50,
    plane: str = "airliner",
    batch_size: int = 32,
    workers: int = 2,
    device: str = "cpu",
    progress: bool = True,
) -> Reproduction:
    """Run a paper's analysis on ``data`` into the folder ``out`` (see the module's docstring).

    Args:
        paper: ``"senet"`` or ``"sge"`` (:data:`PAPERS`).
        data: an ImageNet-shaped folder (class folders, or a flat folder with ``labels``).
        model, weights: the network (default the paper's, with its pretrained weights).
        labels, synsets: a label file for a flat folder (:func:`sevis.data.labels.read_labels`).
        per_class: images per class (the SENet paper's 50).
        plane: which ImageNet class the SENet paper's "plane" is (:data:`PLANES`, or any
            name or index of a class).

    Raises:
        SevisError: an unknown paper, a model without that paper's attention, or a step's
            failure (the steps done stay, for the next call to continue).
    """
    if paper not in PAPERS:
        raise SevisError(f"unknown paper {paper[:40]!r}; sevis reproduces {', '.join(PAPERS)}")
    spec = PAPERS[paper]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    network = load_model(model or str(spec["model"]), weights, device=device)
    info = model_info(network)
    if not any(layer.kind == spec["kind"] for layer in find_attention(network)):
        raise SevisError(f"{info.name} has no {str(spec['kind']).upper()} layers: {paper} needs them")
    if labels is not None:
        read_labels(labels, synsets)  # a bad label file stops here, before any work
    settings = RunSettings(
        batch_size=batch_size,
        workers=workers,
        per_class=per_class,
        labels=None if labels is None else str(labels),
        synsets=None if synsets is None else str(synsets),
        resume=True,
    )
    steps = 3 if info.untrained else 4
    run_path, base_path, ablation_path = (folder / n for n in ("run.parquet", "untrained.parquet", "ablation.csv"))
    _step(1, steps, f"{info.name} over {data} ({per_class} images a class) into {run_path.name}")
    extract(network, data, run_path, settings, progress=progress)
    if not info.untrained:
        _step(2, steps, f"the same images through {info.name} with random weights (seed 0): {base_path.name}")
        untrained = load_model(info.name, "untrained", device=device)
        extract(untrained, data, base_path, settings, progress=progress)
        del untrained
    _step(steps - 1, steps, f"each stage's attention removed, then all: {ablation_path.name}")
    # NOTE kept only for the same images through the same network: a run that grew since (more
    # images arrived, then resumed) is ablated again
    stamp = json.dumps(
        {
            "images": read_metadata(run_path).images,
            "model": info.name,
            "weights_sha256": info.weights_sha256,
            "untrained": info.untrained,
        }
    )
    stamp_path = folder / "ablation.json"
    if ablation_path.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
        log.info("  kept from before: %s", ablation_path)
    else:
        result = ablate_data(
            network,
            run_path,
            ablation_conditions(network, str(spec["kind"])),
            batch_size=batch_size,
            workers=workers,
            progress=progress,
        )
        write_atomic(ablation_path, export.frame_csv(result.frame()))
        write_atomic(stamp_path, stamp.encode())
    _step(steps, steps, "the findings: findings.json and report.html")
    run = read_run(run_path)
    base = read_run(base_path) if base_path.exists() and not info.untrained else None
    ablation = pd.read_csv(ablation_path)
    context = _Context(paper, spec, run, base, ablation, network, plane)
    findings = _FINDINGS[paper](context)
    reproduction = Reproduction(paper, folder, findings)
    numbers = json.dumps(_plain(_numbers(context, findings)), indent=2, allow_nan=False)
    write_atomic(reproduction.numbers, numbers.encode())
    write_atomic(reproduction.report, _page(context, findings).encode("utf-8"))
    log.info("wrote %s and %s", reproduction.report, reproduction.numbers)
    return reproduction


def _step(k: int, total: int, what: str) -> None:
    log.info("step %d of %d: %s", k, total, what)


@dataclass
class _Context:
    paper: str
    spec: Mapping[str, Any]
    run: Run
    base: Run | None
    ablation: pd.DataFrame
    model: nn.Module
    plane: str

    @property
    def stats(self) -> ClassStats:
        return self.run.stats[str(self.spec["kind"])]

    @functools.cached_property
    def paper_classes(self) -> tuple[dict[str, str], list[str]]:
        """The run's label of each of Figure 6's classes found in it (label -> the name
        shown), and the ones missing; matched once (Figures 6 and 7 both use them)."""
        plane = str(PLANES.get(self.plane, self.plane))
        wanted = {"goldfish": "goldfish", "pug": "pug", f"plane ({_class_name(self, plane)})": plane, "cliff": "cliff"}
        found, missing = {}, []
        for shown, name in wanted.items():
            try:
                found[resolve_classes([name], self.stats.classes)[0]] = shown
            except RunError:
                missing.append(shown)
        return found, missing


# --- SENet -----------------------------------------------------------------------------


def _senet(ctx: _Context) -> list[Finding]:
    return [
        _accuracy(ctx),
        _figure6(ctx),
        _depth(ctx),
        _saturation(ctx),
        _last_block(ctx),
        _figure7(ctx),
        _knockout(ctx),
    ]


def _class_name(ctx: _Context, name: str) -> str:
    names = model_info(ctx.model).class_names
    return names[int(name)] if name.isdigit() and int(name) < len(names) else name


def _excitations(stats: ClassStats) -> ExcitationStats:
    """SE's statistics, as the SENet figures take them."""
    if not isinstance(stats, ExcitationStats):
        raise SevisError(f"the SENet paper's figures need SE statistics, not {type(stats).__name__}")
    return stats


def _accuracy(ctx: _Context) -> Finding:
    top1, top5 = ctx.spec["top1"], ctx.spec["top5"]
    paper = f"{top1} % top-1" + (f", {top5} % top-5" if top5 else "")
    paper += f" on ImageNet's validation set ({ctx.spec['accuracy_source']})"
    rule = f"agrees when top-1 is within 0.5 points of {top1} % over at least {FULL_SET:,} labelled images"
    none = ctx.ablation[ctx.ablation.condition == "none"].iloc[0]
    images = int(none.images)
    numbers = {"top1": float(none.top1), "top5": float(none.top5), "labelled_images": images}
    if ctx.run.metadata.untrained:
        measured, verdict = "random weights: no accuracy to compare", CANNOT_TELL
    elif images < FULL_SET:
        measured = f"top-1 {none.top1:.2%}, top-5 {none.top5:.2%} over {images:,} labelled images: too few to compare"
        verdict = CANNOT_TELL
    else:
        measured = f"top-1 {none.top1:.2%}, top-5 {none.top5:.2%} over {images:,} labelled images"
        verdict = AGREES if abs(100 * none.top1 - top1) <= 0.5 else DIFFERS
    return Finding("accuracy", "The network's accuracy", paper, rule, measured, verdict, numbers)


def _figure6(ctx: _Context) -> Finding:
    found, missing = ctx.paper_classes
    layers = paper_layers(ctx.stats.layers)
    paper = (
        "Figure 6 (goldfish, pug, plane, cliff; 50 images each): in early layers the excitations are nearly "
        "class-agnostic, the lines overlap; with depth they become class-specific (SE_4_6, SE_5_1)"
    )
    plane = f"'plane' is taken as ImageNet's {_class_name(ctx, str(PLANES.get(ctx.plane, ctx.plane)))}"
    rule = (
        f"agrees when the class-specificity (omega squared) of the four classes at {layers[0]} is below "
        f"both {', '.join(layers[2:4])}'s; {plane} (the paper gives no index: --plane chooses)"
    )
    if len(found) < 2 or len(layers) < 4:
        measured = f"the run has {len(found)} of the paper's classes (missing: {', '.join(missing) or 'none'})"
        return Finding("figure6", "Figure 6: class-specific excitation with depth", paper, rule, measured, CANNOT_TELL)
    four = _excitations(ctx.stats.regroup(found))
    omega = {layer: four.specificity(layer) for layer in layers}
    early, later = omega[layers[0]], [omega[x] for x in layers[2:4]]
    verdict = AGREES if all(early < x for x in later) else DIFFERS
    measured = "class-specificity of the classes found: " + ", ".join(f"{k} {v:.3f}" for k, v in omega.items())
    if missing:
        measured += f" (not in the run: {', '.join(missing)})"
    fig = figures.class_profiles_grid(four, layers, list(dict.fromkeys(found.values())))
    numbers = {"classes": found, "missing": missing, "specificity": omega}
    return Finding(
        "figure6", "Figure 6: class-specific excitation with depth", paper, rule, measured, verdict, numbers, [fig]
    )


def _depth(ctx: _Context) -> Finding:
    kind = str(ctx.spec["kind"])
    stats = ctx.stats
    paper = (
        "excitations grow class-specific with depth; early features are shared across classes "
        "(section 7, 'Role of Excitation')"
    )
    rule = (
        "agrees when the largest class-specificity of the last two stages exceeds every layer of the first, "
        "lies above its layer's chance band (199 label permutations, 95 %) and above the untrained network's"
    )
    if len(stats.classes) < 2:
        return Finding("depth", "Class-specificity against depth", paper, rule, "the run has one class", CANNOT_TELL)
    omega = {layer: stats.specificity(layer) for layer in stats.layers}
    bands = ctx.run.null_bands(kind)
    untrained = None
    if ctx.base is not None and kind in ctx.base.stats:
        untrained = {layer: ctx.base.stats[kind].specificity(layer) for layer in ctx.base.stats[kind].layers}
    stage = {k: parse_layer(k).stage or 0 for k in omega}  # layers without stages: one group
    stages = sorted(set(stage.values()))
    first = [v for k, v in omega.items() if stage[k] == stages[0]]
    late = {k: v for k, v in omega.items() if stage[k] in stages[-2:]}
    best = max(late, key=lambda k: -math.inf if math.isnan(late[k]) else late[k])
    above_band = omega[best] > bands[best].high
    above_untrained = untrained is not None and omega[best] > untrained.get(best, math.inf)
    numbers = {
        "specificity": omega,
        "band_high": {k: b.high for k, b in bands.items()},
        "untrained": untrained,
        "deepest_best": best,
    }
    measured = (
        f"{best}: {omega[best]:.3f} (band up to {bands[best].high:.3f}"
        + (f", untrained {untrained[best]:.3f}" if untrained and best in untrained else ", no untrained baseline")
        + f"); the first stage's layers {min(first):.3f} to {max(first):.3f}"
    )
    if untrained is None:
        verdict = CANNOT_TELL
        measured += " (random weights are the run itself: nothing to compare)" if ctx.run.metadata.untrained else ""
    else:
        verdict = AGREES if omega[best] > max(first) and above_band and above_untrained else DIFFERS
    curves = {ctx.run.metadata.model: stats}
    nulls = {ctx.run.metadata.model: bands}
    difference = None
    if ctx.base is not None and untrained is not None:
        curves["untrained"], nulls["untrained"] = ctx.base.stats[kind], ctx.base.null_bands(kind)
        difference = (ctx.run.metadata.model, "untrained")
    fig = figures.specificity_curve(curves, str(ctx.spec["kind"]).upper(), nulls, difference)
    return Finding("depth", "Class-specificity against depth", paper, rule, measured, verdict, numbers, [fig])


def _saturation(ctx: _Context) -> Finding:
    stats = ctx.stats
    layers = paper_layers(stats.layers)
    target = layers[4] if len(layers) >= 5 else layers[-1]
    paper = f"{target} is saturated: most of its activations are close to 1 (the block acts almost as identity)"
    rule = f"agrees when {target} has the largest share of gates at or above 0.99 of all SE layers"
    shares = {layer: stats.saturation(layer) for layer in stats.layers}
    high = {k: v["share_high"] for k, v in shares.items()}
    if not all(np.isfinite(list(high.values()))):
        return Finding("saturation", f"{target}'s saturation", paper, rule, "no gate values counted", CANNOT_TELL)
    top = max(high, key=high.__getitem__)
    rank = sorted(high.values(), reverse=True).index(high[target]) + 1
    measured = (
        f"{target}: {high[target]:.1%} of its gates >= 0.99 (mean |1 - s| {shares[target]['mean_gap']:.3f}), "
        f"rank {rank} of {len(high)} layers; the most saturated is {top} ({high[top]:.1%})"
    )
    verdict = AGREES if top == target else DIFFERS
    return Finding(
        "saturation",
        f"{target}'s saturation",
        paper,
        rule,
        measured,
        verdict,
        {"share_high": high, "mean_gap": {k: v["mean_gap"] for k, v in shares.items()}},
    )


def _class_correlation(stats: ClassStats, layer: str) -> float:
    """Mean Pearson correlation between the class-mean profiles of every pair of classes."""
    means = np.stack([stats.mean(layer, c) for c in stats.classes])
    if len(means) < 2:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(means)
    upper = r[np.triu_indices(len(means), 1)]
    return float(np.nanmean(upper)) if np.isfinite(upper).any() else float("nan")


def _last_block(ctx: _Context) -> Finding:
    layers = paper_layers(ctx.stats.layers)
    last = layers[-1]
    paper = f"{last} shows one pattern across classes, up to a change of scale"
    rule = f"agrees when the class-mean profiles at {last} correlate at 0.9 or more on average (Pearson, every pair)"
    r = {layer: _class_correlation(ctx.stats, layer) for layer in layers}
    if not np.isfinite(r[last]):
        return Finding("last_block", f"{last}: one pattern", paper, rule, "fewer than two classes", CANNOT_TELL)
    measured = "mean correlation of the class-mean profiles: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items())
    return Finding(
        "last_block",
        f"{last}: one pattern",
        paper,
        rule,
        measured,
        AGREES if r[last] >= 0.9 else DIFFERS,
        {"class_correlation": r},
    )


def _figure7(ctx: _Context) -> Finding:
    found, _ = ctx.paper_classes
    wanted = [label for label, shown in found.items() if shown == "goldfish" or shown.startswith("plane")]
    layers = paper_layers(ctx.stats.layers)
    paper = "Figure 7 (goldfish, plane): excitations also vary across the instances of one class (mean +- std)"
    rule = "agrees when at every layer shown the mean within-class standard deviation of the excitations exceeds 0.01"
    if not wanted:
        return Finding(
            "figure7",
            "Figure 7: variation within a class",
            paper,
            rule,
            "neither goldfish nor the plane is in the run",
            CANNOT_TELL,
        )
    std = {
        layer: {found[c]: float(np.nanmean(ctx.stats.std(layer, c))) for c in wanted if ctx.stats.count(c) > 1}
        for layer in layers
    }
    values = [v for per in std.values() for v in per.values()]
    if not values:
        return Finding(
            "figure7", "Figure 7: variation within a class", paper, rule, "one image a class: no spread", CANNOT_TELL
        )
    measured = "mean within-class std: " + "; ".join(
        f"{layer} " + ", ".join(f"{c} {v:.3f}" for c, v in per.items()) for layer, per in std.items()
    )
    renamed = _excitations(ctx.stats.regroup({c: found[c] for c in wanted}))
    figs = [figures.class_band_panels(renamed, layer, [found[c] for c in wanted]) for layer in layers]
    return Finding(
        "figure7",
        "Figure 7: variation within a class",
        paper,
        rule,
        measured,
        AGREES if min(values) > 0.01 else DIFFERS,
        {"within_class_std": std},
        figs,
    )


def _knockout(ctx: _Context) -> Finding:
    table = ctx.ablation.set_index("condition")
    stages = [c for c in table.index if c.startswith("stage ")]
    last = stages[-1] if stages else None
    found = find_attention(ctx.model)
    parameters = {layer.name: sum(p.numel() for p in layer.module.parameters()) for layer in found}
    last_names = {x.name for x in found if last is not None and f"stage {x.stage}" == last}
    share = sum(v for k, v in parameters.items() if k in last_names) / max(sum(parameters.values()), 1)
    paper = (
        "removing the last stage's SE blocks costs a marginal amount of accuracy (under 0.1 % top-5) and saves "
        "a large share of SE's extra parameters"
    )
    rule = (
        "agrees when knocking out the last stage's gates (set to 1) lowers top-5 accuracy by less than 0.1 points. "
        "NOTE an intervention on one trained network, not the paper's network trained without them"
    )
    if last is None or table.loc["none", "images"] == 0:
        return Finding(
            "knockout", "Knocking out the last stage", paper, rule, "no stages or no labelled images", CANNOT_TELL
        )
    change = float(table.loc[last, "top5_change"])
    top1 = float(table.loc[last, "top1_change"])
    images = int(table.loc["none", "images"])
    measured = (
        f"{last} knocked out: top-5 {change * 100:+.2f} points, top-1 {top1 * 100:+.2f} points over "
        f"{images:,} labelled images; its SE layers hold {share:.0%} of SE's parameters"
    )
    numbers = {
        "condition": last,
        "top5_change": change,
        "top1_change": top1,
        "parameter_share": share,
        "table": ctx.ablation.to_dict(orient="records"),
    }
    fig = figures.ablation_chart(ctx.ablation)
    return Finding(
        "knockout",
        "Knocking out the last stage",
        paper,
        rule,
        measured,
        AGREES if change > -0.001 else DIFFERS,
        numbers,
        [fig],
    )


# --- SGE -------------------------------------------------------------------------------


def _sge(ctx: _Context) -> list[Finding]:
    return [_accuracy(ctx), _views(ctx), _distributions(ctx)]


def _views(ctx: _Context) -> Finding:
    stats = ctx.stats
    layer = stage_ends(stats.layers)[-2] if len(stage_ends(stats.layers)) > 1 else stats.layers[-1]
    paper = (
        "per group, the feature map after SGE lights up semantic parts (a dog's nose, ears, eyes) and "
        "suppresses the background (the paper's before/after figures)"
    )
    rule = "a qualitative claim: look at the figure (the first image of the run, its groups SGE changes most)"
    first = next(iter(ctx.run.iter_layer(layer)), None)
    if first is None or not first.names:
        return Finding("views", "Before and after SGE", paper, rule, "the run has no images", CANNOT_TELL)
    path = str(first.names[0])
    config = model_info(ctx.model).data_config
    decoded = next(iter_batches(ctx.run.metadata.source, [Item(path, None)], config, batch_size=1, workers=0), None)
    views = decoded.views if decoded is not None else None
    batch = forward_batch(ctx.model, views, layers=[layer]) if views is not None else None
    if batch is None or layer not in batch.extras:
        return Finding(
            "views", "Before and after SGE", paper, rule, f"{path[:200]} could not be read again", CANNOT_TELL
        )
    before = batch.extras[layer]["norm_before"][0]
    after = before * batch.values[layer][0]
    # the norms on the distributions' scale: each group's over its largest before SGE, (G, H x W)
    spread = get_kind(str(ctx.spec["kind"])).distribution_values(batch.values[layer], batch.extras[layer])
    assert spread is not None  # SGE's module values were captured just above
    scaled_before, scaled_after = spread["before"][0], spread["after"][0]
    groups = [int(g) for g in np.argsort(-np.abs(scaled_after - scaled_before).mean(1))[:4]]
    low_before = float((scaled_before < 0.1).mean())
    low_after = float((scaled_after < 0.1).mean())
    measured = (
        f"{layer} on {Path(path).name[:80]}: positions below a tenth of their group's peak {low_before:.0%} "
        f"before SGE, {low_after:.0%} after; groups shown {groups}"
    )
    fig = figures.group_feature_maps(before, after, groups, layer)
    numbers = {"layer": layer, "image": path, "groups": groups, "low_before": low_before, "low_after": low_after}
    return Finding("views", "Before and after SGE", paper, rule, measured, LOOK, numbers, [fig])


def _distributions(ctx: _Context) -> Finding:
    stats = ctx.stats
    ends = stage_ends(stats.layers)
    paper = (
        "over the validation set, SGE gives a group's activations a larger variance: large ones are kept, "
        "small ones pushed towards 0"
    )
    rule = (
        f"agrees when at {ends[-1]} the activations after SGE have a larger variance than before and a larger share "
        "below 0.1 (norms over each image's largest of the group before SGE, all images and groups)"
    )
    centres = (BIN_EDGES[:-1] + BIN_EDGES[1:]) / 2
    numbers: dict[str, Any] = {}
    figs = []
    for layer in ends:
        if "before" not in stats.distributions(layer):
            continue
        moments = {}
        for when in ("before", "after"):
            counts = stats.distribution(layer, when).astype(np.float64)
            total = counts.sum()
            mean = float((counts * centres).sum() / total)
            moments[when] = {
                "variance": float((counts * (centres - mean) ** 2).sum() / total),
                "below_0.1": float(counts[centres < 0.1].sum() / total),
            }
        numbers[layer] = moments
        figs.append(figures.group_distributions(stats, layer))
    if ends[-1] not in numbers:
        return Finding(
            "distributions",
            "Distributions before and after SGE",
            paper,
            rule,
            "the run kept no distributions (made with --no-distributions?)",
            CANNOT_TELL,
        )
    last = numbers[ends[-1]]
    measured = "; ".join(
        f"{layer}: variance {m['before']['variance']:.4f} -> {m['after']['variance']:.4f}, below 0.1 "
        f"{m['before']['below_0.1']:.1%} -> {m['after']['below_0.1']:.1%}"
        for layer, m in numbers.items()
    )
    wider = last["after"]["variance"] > last["before"]["variance"]
    lower = last["after"]["below_0.1"] > last["before"]["below_0.1"]
    return Finding(
        "distributions",
        "Distributions before and after SGE",
        paper,
        rule,
        measured,
        AGREES if wider and lower else DIFFERS,
        numbers,
        figs,
    )


_FINDINGS: dict[str, Callable[[_Context], list[Finding]]] = {"senet": _senet, "sge": _sge}


# --- the outputs -----------------------------------------------------------------------


def _plain(value: object) -> object:
    """``value`` as standard JSON holds it: NumPy scalars as numbers, NaN and infinities as
    null (Python's json would write NaN, which other readers refuse)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _numbers(ctx: _Context, findings: Sequence[Finding]) -> dict[str, Any]:
    m = ctx.run.metadata
    return {
        "paper": ctx.paper,
        "title": ctx.spec["title"],
        "model": m.model,
        "weights": m.weights,
        "weights_sha256": m.weights_sha256,
        "untrained": m.untrained,
        "data": m.source,
        "images": m.images,
        "per_class": m.per_class,
        "findings": [{k: v for k, v in asdict(f).items() if k != "figures"} for f in findings],
    }


_COLOURS = {AGREES: "#1b7f3b", DIFFERS: "#b00020", CANNOT_TELL: "#777", LOOK: "#1f5fa8"}


def _page(ctx: _Context, findings: Sequence[Finding]) -> str:
    m = ctx.run.metadata
    esc = html.escape
    weights = "untrained, seed 0" if m.untrained else f"{m.weights} (SHA-256 {m.weights_sha256 or 'from a model hub'})"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>sevis reproduce {esc(ctx.paper)}</title>",
        (
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "td,th{padding:.3em 1em .3em 0;vertical-align:top;text-align:left}.v{font-weight:bold}</style></head><body>"
        ),
        f"<h1>{esc(str(ctx.spec['title']))}: the findings on this data</h1>",
        (
            f"<p>{esc(m.model)} with {esc(weights)}; {m.images:,} images of {esc(m.source)}"
            f" ({m.per_class or 'all'} a class).</p>"
        ),
    ]
    if m.untrained:
        parts.append(
            f"<p style='color:#b00020;font-weight:bold'>{esc(figures.UNTRAINED_NOTE)} The verdicts below say "
            "what random weights do, not whether the paper's findings hold.</p>"
        )
    if m.labels == "predicted":
        parts.append(
            "<p style='color:#b00020;font-weight:bold'>The images have no labels (a flat folder without --labels): "
            "each is counted under the class the network predicts, while the paper's figures are by true class. "
            "Give ImageNet's labels with --labels (and --synsets).</p>"
        )
    parts.append("<table><tr><th>finding</th><th>the paper</th><th>measured here</th><th>verdict</th></tr>")
    for f in findings:
        colour = _COLOURS.get(f.verdict, "#222")
        parts.append(
            f"<tr><td><a href='#{esc(f.key)}'>{esc(f.title)}</a></td><td>{esc(f.paper)}</td>"
            f"<td>{esc(f.measured)}</td><td class='v' style='color:{colour}'>{esc(f.verdict)}</td></tr>"
        )
    parts.append("</table>")
    first = True
    for f in findings:
        parts += [
            f"<h2 id='{esc(f.key)}'>{esc(f.title)}</h2>",
            f"<p><b>The paper</b>: {esc(f.paper)}</p>",
            f"<p><b>Measured</b>: {esc(f.measured)}</p>",
            (
                f"<p><b>Verdict</b>: <span class='v' style='color:{_COLOURS.get(f.verdict, '#222')}'>"
                f"{esc(f.verdict)}</span> ({esc(f.rule)})</p>"
            ),
        ]
        for fig in f.figures:
            shown = figures.mark_untrained(fig) if m.untrained else fig
            parts.append(shown.to_html(full_html=False, include_plotlyjs=first))
            first = False
    parts.append("</body></html>")
    return "\n".join(parts)
