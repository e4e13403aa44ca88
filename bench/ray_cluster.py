"""Rows per second per worker node of `sevis extract --engine ray` on a Ray cluster of this
machine: a head (no work) and N worker nodes, every one on 127.0.0.1 in a network namespace
of its own (tests/ray_cluster.py says why), SE-ResNet-50 with random weights, one actor
per node; the actors write the parts, the driver adopts them.

    python bench/ray_cluster.py [--images 48] [--nodes 1 2] [--cpus 2] [--batch 8]

Needs `unshare -n` (root). Prints, per cluster size, the extraction's seconds (from the
driver's start to the merged file, actors' model loading included), rows/s and rows/s per
worker node.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from dashboard import fifty_photographs  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of each worker node (its actor's and decoding's)")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sevis-bench-") as work:
        data = Path(work) / "data"
        for name, label, raw in fifty_photographs()[: args.images]:
            (data / label).mkdir(parents=True, exist_ok=True)
            (data / label / name).write_bytes(raw)
        for nodes in args.nodes:
            temp = tempfile.mkdtemp(prefix="r", dir="/tmp")
            out, result = Path(work) / f"run{nodes}.parquet", Path(work) / f"result{nodes}.json"
            spec = {
                "root": str(ROOT), "weights": "untrained", "data": str(data), "out": str(out), "temp": temp,
                "port": 6390, "nodes": nodes, "cpus": args.cpus, "batch_size": args.batch, "workers": nodes,
                "kill_after": None, "grace": 0, "result": str(result),
            }  # fmt: skip
            (Path(work) / "spec.json").write_text(json.dumps(spec))
            command = ["unshare", "-n", sys.executable, str(ROOT / "tests" / "ray_cluster.py"), f"{work}/spec.json"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if done.returncode:
                raise SystemExit(f"the cluster run failed:\n{done.stderr[-3000:]}")
            (driver,) = json.loads(result.read_text())["drivers"]
            seconds = float(re.findall(r"extracted in ([0-9.]+) s", driver["stderr"])[-1])
            rate = args.images / seconds
            print(
                f"{nodes} worker node(s) x {args.cpus} CPU, {args.images} images, batch {args.batch}: "
                f"{seconds:.1f} s, {rate:.2f} rows/s, {rate / nodes:.2f} rows/s per node",
                flush=True,
            )


if __name__ == "__main__":
    main()
