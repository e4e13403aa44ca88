"""Labels from a file, for a flat folder of images such as ImageNet's validation set as it is
distributed (50,000 JPEGs in one folder, their classes in a separate file).

Three formats, told apart by their content:

* the ILSVRC2012 devkit's ``ILSVRC2012_validation_ground_truth.txt``: one class ID (1 to
  1,000) per line, line i for ``ILSVRC2012_val_0000000i.JPEG``, in the devkit's own synset
  order (not the sorted WordNet ids that timm and torchvision index by), so it needs that
  order: ``synsets``, a text file with one WordNet id per line in ID order, or the devkit's
  ``meta.mat``;
* Kaggle's ``LOC_val_solution.csv``: ``ImageId,PredictionString``, the first WordNet id of
  each prediction string the label;
* a plain CSV of ``path,label`` (a header row of exactly that is skipped).

Images are matched by file name without its extension (``ILSVRC2012_val_00000001``).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path, PurePosixPath

from ..errors import DataError, shortened

__all__ = ["MAX_LABEL_FILE_BYTES", "read_labels"]


MAX_LABEL_FILE_BYTES = 64 << 20
"""Largest label file read (Kaggle's 50,000-row CSV is 2.4 MB)."""


MAX_LABEL_CHARS = 4096
"""Longest label kept (a saved run refuses longer text)."""


_WNID = re.compile(r"n\d{8}")


def read_labels(path: str | Path, synsets: str | Path | None = None) -> dict[str, str]:
    """Each image's label by its file name without extension (see the module's formats).

    Raises:
        DataError: the file is unreadable, too large, of none of the formats, or a devkit
            ground truth without its synset order.
    """
    text = _read(path, "labels")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{shortened(Path(path).name)}: no labels in it")
    if all(line.isdigit() for line in lines):
        return _devkit(path, lines, synsets)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:  # a field past csv's limit, a NUL byte
        raise DataError(f"{shortened(Path(path).name)}: not a CSV sevis reads ({shortened(str(err), 100)})") from None
    header = [cell.strip() for cell in rows[0]] if rows else []
    if header[:2] == ["ImageId", "PredictionString"]:
        return _kaggle(path, rows[1:])
    body = rows[1:] if [h.lower() for h in header[:2]] == ["path", "label"] else rows
    labels = {}
    for number, row in enumerate(body, start=2 if body is not rows else 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{shortened(Path(path).name)}, line {number}: expected path,label")
        labels[PurePosixPath(row[0].strip()).stem] = _label(path, row[1].strip(), number)
    return labels


def _read(path: str | Path, what: str) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_LABEL_FILE_BYTES:
            raise DataError(f"{shortened(path.name)}: {size:,} bytes, larger than a {what} file sevis reads")
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        raise DataError(f"{shortened(path.name)}: cannot be read ({err.strerror or type(err).__name__})") from None


def _label(path: str | Path, label: str, line: int) -> str:
    if len(label) > MAX_LABEL_CHARS:
        raise DataError(f"{shortened(Path(path).name)}, line {line}: a label longer than {MAX_LABEL_CHARS} characters")
    return label


def _kaggle(path: str | Path, rows: list[list[str]]) -> dict[str, str]:
    labels = {}
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        found = _WNID.search(row[1]) if len(row) > 1 else None
        if found is None:
            raise DataError(f"{shortened(Path(path).name)}, line {number}: no WordNet id in its PredictionString")
        labels[PurePosixPath(row[0].strip()).stem] = found.group()
    return labels


def _devkit(path: str | Path, lines: list[str], synsets: str | Path | None) -> dict[str, str]:
    if synsets is None:
        raise DataError(
            f"{shortened(Path(path).name)} holds class IDs (the devkit's ground truth): give the devkit's synset "
            "order too (its meta.mat, or a file of one WordNet id per line in ID order)"
        )
    order = _synsets(synsets)
    labels = {}
    for number, line in enumerate(lines, start=1):
        index = int(line)
        if not 1 <= index <= len(order):
            raise DataError(f"{shortened(Path(path).name)}, line {number}: class ID {index} of 1 to {len(order)}")
        labels[f"ILSVRC2012_val_{number:08d}"] = order[index - 1]
    return labels


def _synsets(path: str | Path) -> list[str]:
    """The devkit's WordNet ids in ID order, from ``meta.mat`` or a text file."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        if path.stat().st_size > MAX_LABEL_FILE_BYTES:
            raise DataError(f"{shortened(path.name)}: larger than a synset file sevis reads")
        try:
            synsets = loadmat(str(path), squeeze_me=True)["synsets"]
            pairs = sorted((int(s["ILSVRC2012_ID"]), str(s["WNID"])) for s in synsets)
        except Exception as err:  # noqa: BLE001  scipy's MATLAB reader raises many kinds
            raise DataError(f"{shortened(path.name)}: not the devkit's meta.mat ({type(err).__name__})") from None
        return [wnid for index, wnid in pairs if index <= 1000]
    order = [line.split()[0] for line in _read(path, "synset").splitlines() if line.strip()]
    bad = next((w for w in order if not _WNID.fullmatch(w)), None)
    if bad is not None:
        raise DataError(f"{shortened(path.name)}: {shortened(bad, 40)!r} is not a WordNet id (n01234567)")
    return order
