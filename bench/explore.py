"""Channel drill-down and excitation map on a 50,000-image saved run: time and memory.

The run is bench/open_run.py's (the real SE-ResNet-50 schema, 1,000 classes of 50 images,
synthetic excitations), written once into --folder and reused. Each measurement runs in a
fresh process that first reads the run's statistics (from the run cache after the first
time: the Classes page's first open is bench/open_run.py's); printed are the wall time and
the peak resident memory added by

  1. ``sevis.channel_view`` of one channel (a layer's column read, one channel kept);
  2. ``sevis.excitation_map`` of SE_4_6 (1,024 channels) and SE_5_3 (2,048): the PCA fitted
     on every image, 5,000 drawn;

each twice, the second time with the file in the page cache.

    python bench/explore.py [--images 50000] [--folder /tmp/sevis-bench-run]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from open_run import write_run  # noqa: E402

import sevis  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


WORK = {
    "channel_view SE_5_2 channel 17": lambda run: sevis.channel_view(run, "SE_5_2", 17),
    "excitation_map SE_4_6 (PCA)": lambda run: sevis.excitation_map(run, "SE_4_6"),
    "excitation_map SE_5_3 (PCA)": lambda run: sevis.excitation_map(run, "SE_5_3"),
}


def child(path: Path, label: str) -> None:
    run = sevis.read_run(path)
    before = peak_mb()
    start = time.perf_counter()
    result = WORK[label](run)
    took = time.perf_counter() - start
    drawn = f", {len(result.points):,} drawn of {result.images:,}" if hasattr(result, "points") else ""
    print(f"{took:6.2f} s  peak +{max(peak_mb() - before, 0):5.0f} MB{drawn}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "sevis-bench-run"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = Path(args.folder) / f"se_resnet50_{args.images}.parquet"  # bench/open_run.py's
    if args.child:
        child(path, args.child)
        return
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_run(path, args.images)
    sevis.read_run(path)  # the statistics into the run cache, so each child reads them fast
    size = path.stat().st_size / 1e9
    print(f"{args.images:,} images, {size:.1f} GB of Parquet; each line a fresh process")
    for label in WORK:
        for attempt in ("first", "again"):
            command = [
                sys.executable,
                __file__,
                "--images",
                str(args.images),
                "--folder",
                args.folder,
                "--child",
                label,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            print(f"  {label:<34} {attempt:<6} {done.stdout.strip()}")


if __name__ == "__main__":
    main()
