"""Layer names, and which layers a view shows by default, from the names alone.

Attention layers of ResNet-style networks get the SENet paper's names
``<PREFIX>_<stage>_<block>`` (arXiv:1709.01507; ``layer1`` is the paper's stage 2):
``SE_2_1`` ... ``SE_5_3``, ``SGE_2_1`` ... ``SGE_5_3``. Other networks get
``<PREFIX>_<n>`` in depth order. Everything here works from the names, so it serves
live models and saved runs alike, and falls back sensibly when a run kept only some
layers or a network has no stages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LayerName", "default_layer", "depth_positions", "paper_layers", "parse_layer", "prefix_of", "stage_ends"]

_STAGED = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_(\d+)_(\d+)$")
_NUMBERED = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_(\d+)$")


@dataclass(frozen=True)
class LayerName:
    """A layer name taken apart: ``SE_4_6`` is prefix ``SE``, stage 4, block 6."""

    prefix: str
    stage: int | None
    block: int | None


def parse_layer(name: str) -> LayerName:
    """Take ``SE_4_6`` (stage and block) or ``SE_7`` (depth order) apart; any other
    name has neither stage nor block."""
    if match := _STAGED.match(name):
        return LayerName(match[1], int(match[2]), int(match[3]))
    if match := _NUMBERED.match(name):
        return LayerName(match[1], None, int(match[2]))
    return LayerName(name, None, None)


def prefix_of(names: Sequence[str]) -> str | None:
    """The one prefix of ``names`` (``ECA`` for ``ECA_2_1, ECA_2_2``): how a kind's layers
    are called in this network (ECA's channel gates are of SE's kind). None if the names
    have several prefixes or there are none."""
    prefixes = {parse_layer(name).prefix for name in names}
    return prefixes.pop() if len(prefixes) == 1 else None


def depth_positions(names: Sequence[str]) -> dict[str, float]:
    """Where each layer sits in its network, in stages, so that layers of different networks
    of one design share an axis: for staged names, ``stage - 2 + block / blocks`` (the end of
    the paper's stage 2 is 1.0, of stage 5 is 4.0; ``SE_2_3``, ``SK_2_3`` and ``BAM_2_4``, the
    last module of stage 2, all 1.0), ``blocks`` the stage's last block among ``names``. Names
    without stages: spread evenly over (0, 4] in the given (depth) order."""
    stages = _by_stage(names)
    if stages is None:
        return {name: 4.0 * (i + 1) / len(names) for i, name in enumerate(names)}
    out = {}
    for stage, blocks in stages.items():
        last = max(parse_layer(name).block or 1 for name in blocks)
        for name in blocks:
            out[name] = stage - 2 + (parse_layer(name).block or 1) / last
    return out


def _by_stage(names: Sequence[str]) -> dict[int, list[str]] | None:
    """Names grouped by stage in the given (depth) order; None if any has no stage."""
    stages: dict[int, list[str]] = {}
    for name in names:
        stage = parse_layer(name).stage
        if stage is None:
            return None
        stages.setdefault(stage, []).append(name)
    return stages


def stage_ends(names: Sequence[str]) -> list[str]:
    """The last block of each stage, in depth order: the blocks before each downsampling
    that the SENet paper picks. Names without stages: all of them."""
    stages = _by_stage(names)
    if stages is None:
        return list(names)
    return [blocks[-1] for blocks in stages.values()]


def paper_layers(names: Sequence[str], limit: int = 6) -> list[str]:
    """The layers the SENet paper's Figure 6 shows, for whatever layers exist.

    For staged names: the last block of every stage but the last, then every block of
    the last stage (for SE-ResNet-50 exactly ``SE_2_3, SE_3_4, SE_4_6, SE_5_1, SE_5_2,
    SE_5_3``). For other names: at most ``limit`` layers evenly spaced in depth, the
    deepest included. ``names`` must be in depth order.
    """
    names = list(names)
    stages = _by_stage(names)
    if stages is None or not stages:
        if len(names) <= limit:
            return names
        step = (len(names) - 1) / (limit - 1)
        return [names[round(i * step)] for i in range(limit)]
    *earlier, last = stages.values()
    return [blocks[-1] for blocks in earlier] + last


def default_layer(names: Sequence[str]) -> str:
    """The one layer a page opens on: the last block of the next-to-last stage (the
    paper's ``SE_4_6``, where excitations turn class-specific), else the middle of
    :func:`paper_layers`.

    Raises:
        ValueError: ``names`` is empty.
    """
    if not names:
        raise ValueError("names must hold at least one layer name")
    stages = _by_stage(names)
    if stages is not None and len(stages) >= 2:
        return list(stages.values())[-2][-1]
    shown = paper_layers(names)
    return shown[(len(shown) - 1) // 2]
