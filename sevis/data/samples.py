"""The photographs that come with sevis (scikit-image's samples, CC0 and public domain): the
dashboard's first page, the weights' self-check and the docs' examples use them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SAMPLE_PHOTOS", "assets_dir", "sample_photos"]

SAMPLE_PHOTOS = {
    "chelsea": "chelsea.png",  # Chelsea the cat: tabby, tiger cat or Egyptian cat
    "coffee": "coffee.png",  # a coffee cup: espresso, cup or coffee mug
    "rocket": "rocket.jpg",  # DSCOVR on Falcon 9: missile, projectile or space shuttle
    "astronaut": "astronaut.png",  # Eileen Collins
}


def assets_dir() -> Path | None:
    """The folder of the sample photographs: ``$SEVIS_ASSETS``, ``sevis/assets`` (where the
    wheel puts them), the ``assets`` folder beside the package (a checkout, the Docker image)
    or in the working folder; None when none holds them all."""
    package = Path(__file__).resolve().parent.parent
    candidates = (os.environ.get("SEVIS_ASSETS"), package / "assets", package.parent / "assets", Path.cwd() / "assets")
    for folder in candidates:
        if folder and all((Path(folder) / name).is_file() for name in SAMPLE_PHOTOS.values()):
            return Path(folder)
    return None


def sample_photos() -> dict[str, Path]:
    """The sample photographs by name (``chelsea``, ``coffee``, ``rocket``, ``astronaut``):
    ``sevis.sample_photos()["chelsea"].read_bytes()`` is a cat to try anything on.

    Raises:
        FileNotFoundError: they are not installed (a checkout without ``assets/``).
    """
    folder = assets_dir()
    if folder is None:
        raise FileNotFoundError("the sample photographs are not installed: set SEVIS_ASSETS to a folder of them")
    return {name: folder / file for name, file in SAMPLE_PHOTOS.items()}
