"""`sevis extract` throughput against the bare forward, and its peak memory.

1. images/s of `sevis extract` (2 decoding workers, batch 32) over images/s of the bare
   model forward on the same images already decoded and preprocessed in memory;
   target >= 0.9 (decoding must overlap the forward pass);
2. peak resident memory of the extracting process for 100, 500 and 2,000 images:
   flat apart from the rows (excitation vectors) waiting for the next part file.

For a model with SGE (``--model sge_resnet50``), line 1 also gives the same run with
``--no-distributions``: what counting the distributions before and after SGE costs.

The images are real photographs (scikit-image's samples, cropped and mirrored, saved
as 640 x 480 JPEGs) in an ImageFolder of 4 classes.

    python bench/extract.py [--images 256] [--memory 100 500 2000] [--model se_resnet50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sevis  # noqa: E402
from sevis.jobs.extraction import extract  # noqa: E402
from sevis.runs.schema import read_metadata  # noqa: E402


def image_folder(root: Path, n: int) -> Path:
    photos = sorted((ROOT / "assets").glob("*.png")) + sorted((ROOT / "assets").glob("*.jpg"))
    for k in range(n):
        source = Image.open(photos[k % len(photos)]).convert("RGB")
        w, h = source.size
        f = 0.6 + 0.4 * ((k * 37) % 100) / 100
        crop = source.crop((0, 0, int(w * f), int(h * f))).resize((640, 480))
        if (k // len(photos)) % 2:
            crop = ImageOps.mirror(crop)
        folder = root / photos[k % len(photos)].stem
        folder.mkdir(parents=True, exist_ok=True)
        crop.save(folder / f"{k:05d}.jpg", quality=90)
    return root


def throughput(name: str, n: int, batch: int, workers: int) -> None:
    model = sevis.load_model(name, "untrained")
    with tempfile.TemporaryDirectory() as tmp:
        data = image_folder(Path(tmp) / "data", n)
        paths = sorted(data.rglob("*.jpg"))
        x = sevis.preprocess(model, [sevis.decode_image(p.read_bytes()) for p in paths])
        with torch.inference_mode():
            model(x[:batch])  # warm-up
            start = time.perf_counter()
            for i in range(0, n, batch):
                model(x[i : i + batch])
            bare = n / (time.perf_counter() - start)

        def timed(out: str, **options: bool) -> float:
            start = time.perf_counter()
            extract(model, data, Path(tmp) / out, batch_size=batch, workers=workers, progress=False, **options)
            return n / (time.perf_counter() - start)

        ours = timed("run.parquet")
        counted = read_metadata(Path(tmp) / "run.parquet").distributions  # the schema alone, not the rows
        if counted:  # SGE: without counting the distributions, then both again in the other order
            plain = [timed("plain.parquet", distributions=False), timed("plain2.parquet", distributions=False)]
            both = [ours, timed("run2.parquet")]
    print(
        f"1. {name}, {n} images, batch {batch}, {workers} workers: extract {ours:.1f} img/s, "
        f"bare forward {bare:.1f} img/s, ratio {ours / bare:.3f}  [target >= 0.9]",
        flush=True,
    )
    if counted:
        print(
            f"   counting SGE's distributions (the default) {np.mean(both):.1f} img/s, with --no-distributions "
            f"{np.mean(plain):.1f} img/s (each the mean of two, in the order with, without, without, with): "
            f"counting costs {1 - np.mean(both) / np.mean(plain):.1%} of the run's time",
            flush=True,
        )


CHILD = """
import sys, json
sys.path.insert(0, {root!r})
import sevis
from sevis.jobs.extraction import extract  # noqa: E402
model = sevis.load_model({name!r}, "untrained")
extract(model, {data!r}, {out!r}, batch_size=32, workers=2, progress=False)
status = open("/proc/self/status").read().splitlines()
print(json.dumps({{k: int(v.split()[0]) for k, v in (l.split(":", 1) for l in status) if k in ("VmHWM", "VmRSS")}}))
"""


def memory(name: str, counts: list[int]) -> None:
    print("2. peak memory of the extracting process (VmHWM):")
    with tempfile.TemporaryDirectory() as tmp:
        data = image_folder(Path(tmp) / "data", max(counts))
        all_paths = sorted(data.rglob("*.jpg"))
        for n in counts:
            subset = Path(tmp) / f"subset-{n}"
            for p in all_paths[:n]:
                (subset / p.parent.name).mkdir(parents=True, exist_ok=True)
                (subset / p.parent.name / p.name).symlink_to(p)
            script = CHILD.format(root=str(ROOT), name=name, data=str(subset), out=str(Path(tmp) / f"{n}.parquet"))
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            seconds = time.perf_counter() - start
            peak = json.loads(result.stdout.strip().splitlines()[-1])["VmHWM"] / 1024
            print(f"   {n:5d} images: peak {peak:.0f} MB ({seconds:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="se_resnet50")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory", type=int, nargs="*", default=[100, 500, 2000])
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    throughput(args.model, args.images, args.batch, args.workers)
    if args.memory:
        memory(args.model, args.memory)


if __name__ == "__main__":
    main()
