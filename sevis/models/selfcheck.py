"""Does a loaded network behave like an ImageNet classifier? A check on real photographs.

Three of the bundled photographs (scikit-image's samples, in ``assets/``) have classes any
trained ImageNet network ranks near the top; the check passes when, for each photograph,
one of its classes is among the network's top five:

==============  ==================================================
``chelsea.png``  tabby (281), tiger cat (282), Egyptian cat (285)
``coffee.png``   espresso (967), cup (968), coffee mug (504)
``rocket.jpg``   missile (657), projectile (744), space shuttle (812)
==============  ==================================================

Random weights put one of three chosen classes in the top five of 1,000 with probability
about 1.5 % per photograph, so all three by chance about 3 in a million; weights meant for
other preprocessing, or trained on something else, fail it too. Networks whose outputs are
not the 1,000 ImageNet classes are not checked (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.images import decode_image, preprocess
from ..data.samples import assets_dir

__all__ = ["CHECK_PHOTOS", "SelfCheck", "self_check"]

CHECK_PHOTOS: dict[str, tuple[int, ...]] = {
    "chelsea.png": (281, 282, 285),
    "coffee.png": (967, 968, 504),
    "rocket.jpg": (657, 744, 812),
}
"""Photograph -> the ImageNet classes (indices) a trained network ranks in its top five."""
TOP = 5


@dataclass(frozen=True)
class PhotoCheck:
    """One photograph: the classes expected, the network's top five, and whether they meet."""

    photo: str
    expected: tuple[str, ...]
    top5: tuple[str, ...]
    passed: bool


@dataclass(frozen=True)
class SelfCheck:
    """The self-check of one network: passed when every photograph passed."""

    passed: bool
    photos: tuple[PhotoCheck, ...]

    def summary(self) -> str:
        """One line for people: the verdict and each photograph's top-1."""
        verdict = "passed" if self.passed else "FAILED"
        shown = ", ".join(
            f"{p.photo}: {p.top5[0]}" + ("" if p.passed else f" (expected {p.expected[0]})") for p in self.photos
        )
        return f"self-check on photographs {verdict}: {shown}"

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "photos": [
                {"photo": p.photo, "expected": list(p.expected), "top5": list(p.top5), "passed": p.passed}
                for p in self.photos
            ],
        }


@torch.inference_mode()
def self_check(model: nn.Module, data_config: dict, class_names: tuple[str, ...]) -> SelfCheck | None:
    """Classify the check photographs with ``model`` as ``data_config`` preprocesses them.

    Returns:
        The verdict with every photograph's top five; None when the network does not
        output the 1,000 ImageNet classes or the photographs are not there.
    """
    folder = assets_dir()
    if len(class_names) != 1000 or folder is None:
        return None
    images = [decode_image((folder / name).read_bytes()) for name in CHECK_PHOTOS]
    device = next(model.parameters()).device
    logits = model(preprocess(data_config, images).to(device)).float()
    top = logits.topk(TOP, dim=1).indices.cpu()
    photos = []
    for (name, expected), row in zip(CHECK_PHOTOS.items(), top.tolist(), strict=True):
        photos.append(
            PhotoCheck(
                name,
                tuple(class_names[i] for i in expected),
                tuple(class_names[i] for i in row),
                bool(set(expected) & set(row)),
            )
        )
    return SelfCheck(all(p.passed for p in photos), tuple(photos))
