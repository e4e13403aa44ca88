"""The cost of the SENet paper's ablation over a saved set, in forward passes of the set.

`sevis ablate` on a saved run of N images (read back from its folder) with each of the
4 stages' attention removed, one at a time, against one plain pass over the same images
through the same reader (decoding, preprocessing, the model): target <= 5 passes for the
baseline and the 4 stages, where a condition-by-condition run would cost 5 whole passes
plus the baseline's. Also the same with "all stages at once" added, and the work counted
exactly: images that went through each stage, over the images times the 4 stages.

    python bench/ablate.py [--images 1000] [--repeats 3] [--model se_resnet50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from extract import image_folder  # noqa: E402

import sevis  # noqa: E402
from sevis.jobs.ablation import ablate_data, ablation_conditions  # noqa: E402
from sevis.jobs.extraction import extract  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="se_resnet50")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model = sevis.load_model(args.model, "untrained")
    conditions = ablation_conditions(model)
    stages = {k: v for k, v in conditions.items() if k != "all"}
    with tempfile.TemporaryDirectory() as tmp:
        data = image_folder(Path(tmp) / "data", args.images)
        run = extract(model, data, Path(tmp) / "run.parquet", batch_size=args.batch_size, progress=False)
        options = dict(batch_size=args.batch_size, workers=2)
        times: dict[str, list[float]] = {"plain": [], "stages": [], "stages+all": []}
        runs: dict[str, dict[str, int]] = {}
        for _ in range(args.repeats):  # alternating, so drifts in the machine's speed hit all alike
            for name, wanted in (("plain", {"none": []}), ("stages", stages), ("stages+all", conditions)):
                start = time.perf_counter()
                result = ablate_data(model, run, wanted, **options)
                times[name].append(time.perf_counter() - start)
                runs[name] = result.stage_runs
    plain = statistics.median(times["plain"])
    print(f"{args.model}, {args.images} images of a saved run read back from its folder, batch {args.batch_size}, ")
    print(f"2 decoding workers, torch {torch.get_num_threads()} threads; median of {args.repeats} alternating runs")
    print(f"  one plain pass (decode + forward):      {plain:7.1f} s  ({args.images / plain:.1f} images/s)")
    for name, label in (("stages", "baseline + 4 stages removed"), ("stages+all", "the same + all at once")):
        t = statistics.median(times[name])
        work = sum(runs[name].values()) / (4 * args.images)
        print(
            f"  {label:<38} {t:7.1f} s  = {t / plain:.2f} passes (min-max {min(times[name]) / plain:.2f}-"
            f"{max(times[name]) / plain:.2f}); stage work {work:.2f} passes"
        )
    print("  target: baseline + 4 stages <= 5 passes (one whole pass per condition would be 5, plus decoding 5 times)")


if __name__ == "__main__":
    main()
