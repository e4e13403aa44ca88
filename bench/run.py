"""Run every benchmark and write BENCHMARKS.md: machine, versions, date, the numbers.

Each benchmark is its own script printing its numbers (medians, min-max of alternating
repeated runs, ratios measured side by side in one run); this one runs them one after
the other, on a quiet machine, and records what they printed.

    pip install -r requirements-dev.txt -r bench/requirements.txt
    python bench/run.py [--out BENCHMARKS.md] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


NOTES = [
    "## What the design buys, and where to read it below",
    "",
    "- Hooks on each layer's gate child store the gate's output as a view (`detach().flatten(1)`,",
    "  `reshape`), with no copy and no recomputation: section 1's ratio is the whole cost.",
    "- `sevis extract` decodes in DataLoader workers while the main process runs the model:",
    "  compare sections 3 (2 workers) and 3b (decoding in the main process).",
    "- Rows leave memory in part files of 1,024 images: section 4's peak stays flat in the",
    "  number of images (the pending part's vectors, about 60 KB an image, are the slope).",
    "- The dashboard caches analyses by the files' bytes: section 2's reruns with the same",
    "  inputs do not run the model; SGE masks (3.5 MB an image) are kept for at most 8 images.",
    "- Per-class statistics are index_add / bincount passes over a batch, whatever its mix of",
    "  classes; a saved run is decoded a row group ahead in a thread, and its statistics and",
    "  chance bands are cached by the Parquet footer's hash: section 6's second open.",
]


def machine() -> list[str]:
    import torch

    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    lines = [
        f"- date: {datetime.date.today().isoformat()}",
        f"- CPU: {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; torch uses {torch.get_num_threads()} threads",
        f"- GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
        f"- Python {platform.python_version()}, torch {torch.__version__}",
    ]
    for name in ("torchvision", "timm", "streamlit", "plotly", "captum", "torchcam", "pytorch_grad_cam"):
        try:
            module = __import__(name)
            lines[-1] += f", {name} {getattr(module, '__version__', '?')}"
        except ImportError:
            pass
    return lines


def run(script: str, *args: str) -> str:
    command = [sys.executable, str(ROOT / script), *args]
    print("$", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT.parent)
    output = "\n".join(
        line
        for line in result.stdout.splitlines()
        if not any(noise in line for noise in ("ScriptRunContext", "No runtime found", "Downloading"))
    )
    print(output, flush=True)
    if result.returncode:
        output += f"\n(failed with exit code {result.returncode}: {result.stderr.strip().splitlines()[-1:]})"
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT.parent / "BENCHMARKS.md"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images (a smoke run)")
    args = parser.parse_args(argv)
    repeats = "5" if args.quick else "15"
    sections = [
        (
            "1. Capture overhead (target <= 1.03)",
            run("capture_overhead.py", "--batch", "1", "8", "--repeats", "11" if args.quick else "31"),
        ),
        (
            "2. One photograph through the dashboard's code path; upload to charts",
            run("dashboard.py", "--repeats", repeats),
        ),
        (
            "3-4. Batch throughput of `sevis extract` against the bare forward (target >= 0.9), and peak memory",
            run(
                "extract.py",
                "--images",
                "64" if args.quick else "256",
                "--memory",
                *(["100"] if args.quick else ["100", "500", "2000"]),
            ),
        ),
        (
            "3b. The same without decoding workers (what overlapping decode with the forward buys)",
            run("extract.py", "--images", "64" if args.quick else "256", "--workers", "0", "--memory"),
        ),
        (
            "3c. An SGE-ResNet-50 run with and without its distributions before and after SGE",
            run("extract.py", "--model", "sge_resnet50", "--images", "64" if args.quick else "192", "--memory"),
        ),
        ("5. Against peers: same image, same model, same run", run("peers.py", "--repeats", repeats)),
        (
            "6. A 50,000-image saved run opened on the Classes page (target < 10 s, < 2 GB added)",
            run("open_run.py", "--images", "5000" if args.quick else "50000"),
        ),
        (
            "9. The SENet paper's ablation over a 1,000-image saved set, in passes of the set (target <= 5)",
            run("ablate.py", "--images", "200" if args.quick else "1000", "--repeats", "1"),
        ),
        (
            "12. Which channels matter: every channel of SE_5_2 knocked out over 50 images, in passes of the set",
            run("importance.py", *(["--channels", "256", "--repeats", "1"] if args.quick else [])),
        ),
        (
            "12b. The Channels page's knock-out table: whole passes against passes resumed at the layer",
            run("knockout_table.py", "--repeats", "3" if args.quick else "7"),
        ),
        (
            "10b. The Channels page's excitation map of a few images: the rows' SVD against the covariance's axes",
            run("map_axes.py", "--repeats", "3" if args.quick else "7"),
        ),
        (
            "10. Channel drill-down and excitation maps on the 50,000-image run",
            run("explore.py", "--images", "5000" if args.quick else "50000"),
        ),
        (
            "8. Load: N sessions uploading photographs while one uploads hostile files (health < 1 s)",
            run("load.py", "--sessions", "2" if args.quick else "3", "--rounds", "2" if args.quick else "4"),
        ),
        (
            "8b. A burst of sessions that never read their sockets (health and a visitor < 1 s p99)",
            run("load.py", "--burst", "10" if args.quick else "40"),
        ),
        ("8c. What decoding one image may cost the server", run("decode.py")),
        (
            "11. A run's chance band: coverage with uninformative labels (target 95 +- 1.5 %), and detection",
            run(
                "chance_band.py",
                *("--seeds", "100" if args.quick else "1000"),
                *("--large-seeds", "50" if args.quick else "400"),
            ),
        ),
    ]
    import torch

    if torch.cuda.is_available():
        sections.append(
            (
                "7. CUDA: throughput with and without capture, batch 64",
                run("capture_overhead.py", "--device", "cuda", "--batch", "64", "--repeats", repeats),
            )
        )
    else:
        sections.append(("7. CUDA", "No GPU on this machine: run `python bench/run.py` on one to fill this in."))

    text = [
        "# Benchmarks",
        "",
        "Written by `python bench/run.py`; every number below is printed by the script named.",
        "",
    ]
    text += [*machine(), "", *NOTES, ""]
    for title, output in sections:
        text += [f"## {title}", "", "```", output.strip(), "```", ""]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
