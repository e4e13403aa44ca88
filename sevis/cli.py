"""The ``sevis`` command line: batch extraction over image folders, and reports."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

__all__ = ["main"]


def _count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sevis", description="See what SE and SGE attention layers do.")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("extract", help="run a model over an image folder or zip; one Parquet row per image")
    ex.add_argument("data", help="folder of class folders (ImageFolder), flat folder, or a zip of either")
    ex.add_argument(
        "--model", default="se_resnet50", help="se_resnet50, sge_resnet50 or a timm id (default se_resnet50)"
    )
    ex.add_argument("--weights", default="pretrained", help="pretrained (default), untrained, or a weights file")
    ex.add_argument("--out", required=True, help="the Parquet file to write")
    ex.add_argument("--batch-size", type=_count(1), default=32, help="images per forward pass (default 32)")
    ex.add_argument("--workers", type=_count(0), default=2, help="data-loading processes (default 2)")
    ex.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ex.add_argument(
        "--per-class", type=_count(1), default=None, help="sample at most N images per class, as the paper's 50"
    )
    ex.add_argument("--seed", type=int, default=0, help="seed of the --per-class sample")
    ex.add_argument("--layers", nargs="+", default=None, help="layers to keep (default all), e.g. SE_4_6 SE_5_2")
    ex.add_argument("--engine", choices=["local", "ray"], default="local")
    ex.add_argument("--address", default=None, help="Ray cluster address (ray://host:10001); default: local Ray")
    group = ex.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="finish an interrupted run")
    group.add_argument("--overwrite", action="store_true", help="replace an existing output")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")

    rep = sub.add_parser("report", help="one standalone HTML page with the paper's figures for a run")
    rep.add_argument("run", help="a Parquet file written by `sevis extract`")
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--classes", nargs="+", default=None, help="classes to show (default: the first 8)")
    rep.add_argument("--layers", nargs="+", default=None, help="layers to show (default: the paper's six)")
    return parser


def _log_to_stderr(quiet: bool) -> None:
    """sevis logs through :mod:`logging`; the command line shows its messages plainly."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("sevis")
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _log_to_stderr(getattr(args, "quiet", False))
    # NOTE imported after parsing: `sevis --help` must not wait for torch.
    import sevis
    from sevis.runwriter import Terminated

    try:
        if args.command == "extract":
            if args.device.startswith("cuda"):
                import torch

                if not torch.cuda.is_available():
                    raise sevis.SevisError("--device cuda: no CUDA device is available here")
            # What both engines take alike.
            options = dict(
                batch_size=args.batch_size,
                workers=args.workers,
                per_class=args.per_class,
                seed=args.seed,
                layers=args.layers,
                resume=args.resume,
                overwrite=args.overwrite,
            )
            if args.engine == "ray":
                from sevis.ray_engine import extract_ray

                extract_ray(
                    args.model, args.weights, args.data, args.out, address=args.address, device=args.device, **options
                )
            else:
                from sevis.extract import extract

                model = sevis.load_model(args.model, args.weights, device=args.device)
                extract(model, args.data, args.out, progress=not args.quiet, **options)
        else:
            from sevis.report import write_report

            out = write_report(args.run, args.out, args.classes, args.layers)
            logging.getLogger("sevis").info("wrote %s", out)
    except Terminated:
        return 143  # 128 + SIGTERM, as a shell reports it
    except KeyboardInterrupt:
        return 130
    except (sevis.SevisError, OSError) as err:  # a person's input or the file system, not a bug
        print(f"sevis {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
