"""Pretrained weights as files: where each model's come from, the folder they land in, and
a resumable downloader.

Every pretrained weights file sevis downloads lands in :func:`weights_dir`
(``$SEVIS_WEIGHTS_DIR`` or ``~/.cache/sevis/weights``), and a file put there by hand is used
the same way: an offline machine or a Docker volume is prepared with ``sevis weights fetch``
on a connected one, then the folder is copied or mounted.

Sources are tried in order: ``http(s)://`` URLs (resumed with a ``Range`` request after an
interruption) and ``gdrive:<file id>`` (Google Drive, through gdown). A file whose name
carries the first hex digits of its SHA-256 (``se_resnet50-ce0d4300.pth``, as torch.hub
names files) is checked against them before it is kept.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WeightsUnavailableError, shortened

__all__ = [
    "WeightsFile",
    "cached_weights",
    "fetch_weights",
    "file_sha256",
    "list_weights_files",
    "register_weights",
    "weights_dir",
    "weights_file",
]

WEIGHT_SUFFIXES = (".pth", ".pth.tar", ".pt", ".bin", ".safetensors")
CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsFile:
    """Where a model's pretrained weights file comes from.

    Attributes:
        file_name: its name in :func:`weights_dir`.
        sources: tried in order: ``http(s)://…`` URLs or ``gdrive:<file id>``.
        manual: links for a person downloading it by hand (pages, mirrors, codes).
        sha256_prefix: leading hex digits of its SHA-256, checked after a download.
        also_matches: file-name patterns also accepted in the folder (names users gave
            hand-downloaded copies before sevis named them).
    """

    file_name: str
    sources: tuple[str, ...]
    manual: tuple[str, ...] = ()
    sha256_prefix: str | None = None
    also_matches: tuple[str, ...] = field(default=())


_FILES: dict[str, WeightsFile] = {
    "se_resnet50": WeightsFile(
        "se_resnet50-ce0d4300.pth",
        (
            # timm's legacy_seresnet50.in1k URL, then the pretrainedmodels package's (the same file)
            "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/se_resnet50-ce0d4300.pth",
            "https://data.lip6.fr/cadene/pretrainedmodels/se_resnet50-ce0d4300.pth",
        ),
        manual=("https://github.com/Cadene/pretrained-models.pytorch",),
        sha256_prefix="ce0d4300",
    ),
    "sge_resnet50": WeightsFile(
        "sge_resnet50.pth.tar",
        ("gdrive:13HPCjrEle6aFbiCo8Afkr2jJssdNwdRn",),
        manual=(
            "https://github.com/implus/PytorchInsight (README: SGE-ResNet50, Google Drive)",
            "https://drive.google.com/file/d/13HPCjrEle6aFbiCo8Afkr2jJssdNwdRn",
            "https://pan.baidu.com/s/11bb2XBGkTqIoOunaSXOOTg (code gxo9)",
        ),
        also_matches=("*sge*resnet50*",),
    ),
    # NOTE the rest of PytorchInsight's family: the README links Google Drive and Baidu for each.
    "cbam_resnet50": WeightsFile(
        "cbam_resnet50.pth.tar",
        ("gdrive:1Q5gIKPARrZzDbCPZHpuj9tqXs06c2YZN",),
        manual=(
            "https://github.com/implus/PytorchInsight (README: CBAM-ResNet50)",
            "https://drive.google.com/open?id=1Q5gIKPARrZzDbCPZHpuj9tqXs06c2YZN",
            "https://pan.baidu.com/s/1xSwUg9LiuHfmGGq8nQs4Ug (code bram)",
        ),
        also_matches=("*cbam*resnet50*",),
    ),
    "bam_resnet50": WeightsFile(
        "bam_resnet50.pth.tar",
        ("gdrive:1K5iAUAIF_yRyC2pIiA65F8Ig0x4NzOqk",),
        manual=(
            "https://github.com/implus/PytorchInsight (README: BAM-ResNet50)",
            "https://drive.google.com/file/d/1K5iAUAIF_yRyC2pIiA65F8Ig0x4NzOqk",
            "https://pan.baidu.com/s/1ijPyAbUNQjlo_BcfDpM9Mg (code z0h3)",
        ),
        also_matches=("bam_resnet50*",),
    ),
    "resnet50_pytorchinsight": WeightsFile(
        "resnet50_pytorchinsight.pth.tar",
        ("gdrive:1ijUOmyDCSQTU9JaNwOu4_fs1cBXHnHPF",),
        manual=(
            "https://github.com/implus/PytorchInsight (README: ResNet50)",
            "https://drive.google.com/file/d/1ijUOmyDCSQTU9JaNwOu4_fs1cBXHnHPF",
            "https://pan.baidu.com/s/1gwvuaqlRT9Sl4rDI9SWn_Q (code zuvx)",
        ),
        also_matches=("old_resnet50*",),
    ),
    "sk_resnet50": WeightsFile(
        "sk_resnet50.pth.tar",
        ("gdrive:1DGYWPeKc7dyJ9i-zPJcPPa2engExPOnJ",),
        manual=(
            "https://github.com/implus/PytorchInsight (README: SK-ResNet50*)",
            "https://drive.google.com/file/d/1DGYWPeKc7dyJ9i-zPJcPPa2engExPOnJ",
            "https://pan.baidu.com/s/1Lx5CNUeRQXOSWjzTlcO2HQ (code tfwn)",
        ),
        also_matches=("sk_resnet50*",),
    ),
}


def register_weights(name: str, file: WeightsFile | None) -> None:
    """Say where the pretrained weights of model ``name`` come from (replacing any; None
    forgets it)."""
    if file is None:
        _FILES.pop(name, None)
    else:
        _FILES[name] = file


def weights_file(name: str) -> WeightsFile | None:
    """Where ``name``'s pretrained weights come from; None for timm hub models (timm's own
    cache) and models without pretrained weights."""
    return _FILES.get(name)


def weights_dir() -> Path:
    """The weights folder: ``$SEVIS_WEIGHTS_DIR`` or ``~/.cache/sevis/weights``."""
    return Path(os.environ.get("SEVIS_WEIGHTS_DIR") or Path.home() / ".cache" / "sevis" / "weights")


def list_weights_files(folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """Weights files in ``folder`` (default :func:`weights_dir`), sorted by name."""
    folder = Path(folder) if folder is not None else weights_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(WEIGHT_SUFFIXES))


def cached_weights(name: str, folder: str | os.PathLike[str] | None = None) -> Path | None:
    """``name``'s pretrained weights file in the weights folder (or, for the default
    folder, in torch.hub's cache, where timm downloaded it), if there."""
    file = weights_file(name)
    if file is None:
        return None
    files = list_weights_files(folder)
    for candidate in files:
        if candidate.name == file.file_name:
            return candidate
    for pattern in file.also_matches:
        for candidate in files:
            if candidate.match(pattern):
                return candidate
    # where timm (torch.hub) downloaded it before sevis kept weights in its own folder
    import torch.hub

    hub = Path(torch.hub.get_dir()) / "checkpoints" / file.file_name
    return hub if folder is None and hub.is_file() else None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_weights(name: str, *, progress: bool = True, folder: str | os.PathLike[str] | None = None) -> Path:
    """``name``'s pretrained weights file: the one in the weights folder, or downloaded
    there from its sources (an interrupted download resumes where it stopped).

    Raises:
        WeightsUnavailableError: no source could be reached; the message names the file,
            where to get it by hand and where to put it.
    """
    file = weights_file(name)
    if file is None:
        raise WeightsUnavailableError(f"sevis does not know where {name}'s pretrained weights come from")
    found = cached_weights(name, folder)
    if found is not None:
        return found
    target = Path(folder) if folder is not None else weights_dir()
    reasons, unresolved = [], []
    for source in file.sources:
        try:
            target.mkdir(parents=True, exist_ok=True)
            return _download(source, target / file.file_name, file.sha256_prefix, progress)
        except _Unresolved as err:
            unresolved.append(err.host)
            reasons.append(f"{_where(source)}: {err}")
        except _Failed as err:
            reasons.append(f"{_where(source)}: {err}")
        except OSError as err:  # the folder: read-only, full, missing permissions
            reasons.append(f"{target}: {err.strerror or err}")
            break
    if unresolved and len(unresolved) == len(reasons):  # said once, not per source
        reasons = [f"no internet connection ({', '.join(dict.fromkeys(unresolved))} could not be resolved)"]
    error = WeightsUnavailableError(unavailable_message(name, "; ".join(reasons), target))
    error.reason = _short("; ".join(reasons))  # for interfaces that phrase the rest themselves
    raise error


def unavailable_message(name: str, reason: str, folder: Path | None = None) -> str:
    """Why ``name``'s pretrained weights are missing and how to get them, in words that
    hold for every interface (no option spelling)."""
    file = weights_file(name)
    folder = folder if folder is not None else weights_dir()
    if file is None:
        return f"the pretrained weights of {name} could not be fetched ({_short(reason)})"
    links = "; ".join(file.manual) or ", ".join(file.sources)
    if not file.sources:  # a file only ever put there by hand
        return f"no pretrained weights for {name} in {folder}: put a file named like {file.file_name} there ({links})"
    return (
        f"the pretrained weights of {name} could not be downloaded ({_short(reason)}). "
        f"Download {file.file_name} by hand ({links}) and put it in {folder}."
    )


class _Failed(Exception):
    """One source failed; the message says how, briefly."""


class _Unresolved(_Failed):
    """A source's host name did not resolve: with every source so, no internet connection."""

    def __init__(self, host: str) -> None:
        super().__init__(f"no internet connection ({host} could not be resolved)")
        self.host = host


def _short(text: str, limit: int = 300) -> str:
    return shortened(" ".join(str(text).split()), limit)


def _where(source: str) -> str:
    if source.startswith("gdrive:"):
        return "Google Drive"
    return urllib.parse.urlsplit(source).netloc or source


def _download(source: str, target: Path, sha256_prefix: str | None, progress: bool) -> Path:
    """Download ``source`` into ``target`` through ``target.part`` (kept after a failure,
    so the next try resumes), then check and rename it."""
    partial = target.with_name(target.name + ".part")
    if source.startswith("gdrive:"):
        _drive(source.removeprefix("gdrive:"), partial, progress)
    else:
        _http(source, partial, progress)
    if sha256_prefix is not None:
        digest = file_sha256(partial)
        if not digest.startswith(sha256_prefix):
            partial.unlink()
            raise _Failed(
                f"the file's SHA-256 {digest[:12]}… does not start with {sha256_prefix}: not the expected file"
            )
    os.replace(partial, target)
    return target


def _http(url: str, partial: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    done = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": "sevis"}
    if done:
        headers["Range"] = f"bytes={done}-"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            if done and response.status != 206:  # the server ignored the range: start over
                done = 0
            size = response.headers.get("Content-Length")
            total = done + int(size) if size and size.isdigit() else None
            with (
                partial.open("ab" if done else "wb") as out,
                tqdm(
                    total=total,
                    initial=done,
                    unit="B",
                    unit_scale=True,
                    desc=partial.name.removesuffix(".part"),
                    disable=not progress,
                    file=sys.stderr,
                ) as bar,
            ):
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and partial.stat().st_size != total:
                raise _Failed(f"the download stopped at {partial.stat().st_size} of {total} bytes")
    except urllib.error.HTTPError as err:
        if err.code == 416 and done:  # nothing left after the range: the file is whole
            return
        raise _Failed(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, socket.gaierror):  # the name did not resolve: no connection at all, mostly
            raise _Unresolved(urllib.parse.urlsplit(url).hostname or url) from None
        raise _Failed(str(reason)) from None


def _drive(file_id: str, partial: Path, progress: bool) -> None:
    """Google Drive's confirmation pages and quota limits are gdown's business; only its
    failure is turned into a message here."""
    try:
        import gdown
    except ImportError:
        raise _Failed("gdown is not installed (pip install gdown)") from None
    try:
        path = gdown.download(id=file_id, output=str(partial), quiet=not progress, resume=True, timeout=30)
    except Exception as err:  # noqa: BLE001  gdown raises its own, requests' and OSError alike
        raise _Failed(_short(str(err).splitlines()[0] if str(err) else type(err).__name__, 200)) from None
    if path is None or not partial.is_file():
        raise _Failed("the file could not be downloaded (a quota or an access restriction)")
