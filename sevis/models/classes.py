"""Class names as people write them: a label matched to a network's class by any of its names,
ImageNet's WordNet id or its index, and the candidates of an ambiguous one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["class_candidates", "class_indices", "imagenet_names"]


def class_indices(labels: Sequence[str | None], class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Each label's class index (-1: not a class of the model), and the labels not found.

    A label matches a class by its full name (``"tabby, tabby cat"``), by any of the
    comma-separated names in it (``"tabby cat"``; a name two classes share, such as
    ``"crane"``, matches none), by ImageNet's WordNet id (``"n02123045"``, the folder
    names of the ImageNet validation set) or by its index (``"281"``); case and ``_``
    against spaces do not matter.
    """

    def norm(text: str) -> str:
        return " ".join(text.replace("_", " ").lower().split())

    candidates: dict[str, set[int]] = {}
    for i, name in enumerate(class_names):
        for key in {norm(name), *(norm(part) for part in name.split(","))}:
            candidates.setdefault(key, set()).add(i)
    lookup = {key: next(iter(found)) for key, found in candidates.items() if len(found) == 1}
    if len(class_names) == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo("imagenet-1k")
        if all(info.index_to_description(i) == class_names[i] for i in (0, 281, 999)):
            lookup.update({info.index_to_label_name(i): i for i in range(1000)})
    indices, missing = np.full(len(labels), -1, dtype=np.int64), []
    for row, label in enumerate(labels):
        if label is None:
            continue
        key = norm(label)
        if key in lookup:
            indices[row] = lookup[key]
        elif key.isdigit() and int(key) < len(class_names):
            indices[row] = int(key)
        elif label not in missing:
            missing.append(label)
    return indices, missing


def class_candidates(label: str, class_names: Sequence[str]) -> list[str]:
    """The classes one of whose comma-separated names is ``label`` (case and ``_`` aside):
    what an ambiguous label such as ``"crane"`` or ``"missile"`` could mean, for a message."""

    def norm(text: str) -> str:
        return " ".join(text.replace("_", " ").lower().split())

    key = norm(label)
    return [name for name in class_names if key in {norm(part) for part in name.split(",")}]


def imagenet_names() -> list[str]:
    """ImageNet-1k's 1,000 class descriptions, in index order (shipped inside timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return [info.index_to_description(i) for i in range(1000)]
