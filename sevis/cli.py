"""The ``sevis`` command line: batch extraction over image folders, and reports."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from torch import nn

__all__ = ["build_parser", "main"]


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


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (the docs' command-line reference is written from it)."""
    parser = argparse.ArgumentParser(prog="sevis", description="See what SE and SGE attention layers do.")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("extract", help="run a model over an image folder or zip; one Parquet row per image")
    ex.add_argument("data", help="folder of class folders (ImageFolder), flat folder, or a zip of either")
    ex.add_argument(
        "--model", default="se_resnet50", help="se_resnet50, sge_resnet50 or a timm id (default se_resnet50)"
    )
    ex.add_argument("--weights", default="pretrained", help="pretrained (default), untrained, or a weights file")
    ex.add_argument(
        "--out",
        required=True,
        help="the run to write: a .parquet file, or (any other name) a folder of its parts, never merged; "
        "a folder may be at a pyarrow.fs URI (s3://bucket/run)",
    )
    ex.add_argument("--batch-size", type=_count(1), default=32, help="images per forward pass (default 32)")
    ex.add_argument("--workers", type=_count(0), default=2, help="data-loading processes (default 2)")
    ex.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ex.add_argument(
        "--per-class", type=_count(1), default=None, help="sample at most N images per class, as the paper's 50"
    )
    ex.add_argument("--seed", type=int, default=0, help="seed of the --per-class sample")
    _label_options(ex)
    ex.add_argument("--layers", nargs="+", default=None, help="layers to keep (default all), e.g. SE_4_6 SE_5_2")
    ex.add_argument(
        "--no-distributions",
        dest="distributions",
        action="store_false",
        help="SGE models: do not count the distributions before and after SGE (about 14 %% of a run's time on a CPU)",
    )
    ex.add_argument("--engine", choices=["local", "ray"], default="local")
    ex.add_argument("--address", default=None, help="Ray cluster address (ray://host:10001); default: local Ray")
    group = ex.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="finish an interrupted run")
    group.add_argument("--overwrite", action="store_true", help="replace an existing output")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")

    wt = sub.add_parser("weights", help="pretrained weights files: what each model needs, fetch them, check them")
    actions = wt.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="each model's file, where sevis looks, what is there (size, SHA-256)")
    fetch = actions.add_parser("fetch", help="download into the weights folder (to prepare an offline machine)")
    fetch.add_argument("models", nargs="+", help="se_resnet50, sge_resnet50")
    check = actions.add_parser("check", help="classify the sample photographs: does the network behave?")
    check.add_argument("target", help="a model name (its pretrained weights) or a weights file")
    check.add_argument("--model", default=None, help="the architecture of a weights file (default se_resnet50)")

    ab = sub.add_parser(
        "ablate", help="top-1/top-5 accuracy with each stage's attention removed (the SENet paper's Table 13)"
    )
    ab.add_argument("data", help="folder or zip of class folders (ImageNet ids or class names), or a saved run")
    _network_options(ab, "ablate")
    ab.add_argument("--out", required=True, help="the table to write (.csv or .parquet)")
    ab.add_argument("--stages", nargs="+", type=int, default=None, help="only these stages (default every one)")
    _dataset_options(ab)

    imp = sub.add_parser(
        "importance",
        help="knock out each channel of one layer: what it costs against its class selectivity (Morcos et al. 2018)",
    )
    imp.add_argument("data", help="folder or zip of class folders (ImageNet ids or class names), or a saved run")
    imp.add_argument("--layer", required=True, help="the layer, e.g. SE_5_2")
    imp.add_argument(
        "--channels", nargs="+", type=_count(0), default=None, help="only these channels or groups (default all)"
    )
    _network_options(imp, "knock channels out")
    imp.add_argument("--out", required=True, help="the table to write (.csv or .parquet), a row per channel")
    imp.add_argument("--figure", default=None, metavar="HTML", help="also write the scatter against selectivity")
    _dataset_options(imp)

    rp = sub.add_parser(
        "reproduce",
        help="a paper's findings from a dataset in one command: its statements beside what your copy measures",
    )
    rp.add_argument("paper", choices=["senet", "sge"], help="senet (Hu et al.) or sge (Li et al.)")
    rp.add_argument("data", help="ImageNet-shaped: class folders (WordNet ids), or a flat folder with --labels")
    rp.add_argument("--out", required=True, help="the folder for the run, the baseline, the ablation and the report")
    rp.add_argument("--model", default=None, help="default: the paper's (se_resnet50, sge_resnet50)")
    rp.add_argument("--weights", default="pretrained", help="pretrained (default), untrained, or a weights file")
    rp.add_argument("--per-class", type=_count(1), default=50, help="images per class (default 50, as the paper)")
    rp.add_argument(
        "--plane",
        default="airliner",
        help="which ImageNet class the SENet paper's 'plane' is: airliner (default), warplane, or plane "
        "(the carpenter's), or any class name or index",
    )
    rp.add_argument("--batch-size", type=_count(1), default=32, help="images per forward pass (default 32)")
    rp.add_argument("--workers", type=_count(0), default=2, help="data-loading processes (default 2)")
    rp.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    _label_options(rp)
    rp.add_argument("--quiet", action="store_true", help="no progress bars")

    rep = sub.add_parser(
        "report", help="one standalone HTML page with the paper's figures for a run, or several runs side by side"
    )
    rep.add_argument(
        "run",
        nargs="+",
        help="a Parquet file written by `sevis extract`; several runs of the same images (other networks or "
        "checkpoints): one page with every module's depth curve on one chart, then each run",
    )
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--classes", nargs="+", default=None, help="classes to show (default: the first 8)")
    rep.add_argument("--layers", nargs="+", default=None, help="layers to show (default: the paper's six)")
    rep.add_argument(
        "--ablations",
        nargs="+",
        default=None,
        metavar="TABLE",
        help="with several runs: `sevis ablate`'s table (.csv or .parquet) of each run's network, in the runs' order: "
        "their knock-outs side by side",
    )
    rep.add_argument(
        "--baseline",
        default=None,
        metavar="RUN",
        help="a run of the same images made with --weights untrained: drawn beside the run (what training added)",
    )
    dash = sub.add_parser("dashboard", help="start the dashboard in a browser tab (needs the app extra: sevis[app])")
    dash.add_argument("--address", default="127.0.0.1", help="where it listens (default: this machine only)")
    dash.add_argument("--port", type=_count(1), default=8501, help="its port (default: 8501)")
    dash.add_argument(
        "--weights-dir",
        default=None,
        metavar="DIR",
        help="the weights folder (default: $SEVIS_WEIGHTS_DIR or the cache; see `sevis weights list`)",
    )
    return parser


def _dataset_options(parser: argparse.ArgumentParser) -> None:
    """How a job over a dataset reads it and where it runs (``ablate``, ``importance``)."""
    parser.add_argument("--batch-size", type=_count(1), default=32, help="images per forward pass (default 32)")
    parser.add_argument("--workers", type=_count(0), default=2, help="data-loading processes (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--per-class", type=_count(1), default=None, help="sample at most N images per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --per-class sample")
    _label_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _network_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--model``, ``--weights``, ``--other-model``: a saved run's own network by default."""
    parser.add_argument(
        "--model",
        default=None,
        help="se_resnet50, sge_resnet50 or a timm id (default: a saved run's own model, else se_resnet50)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="pretrained, untrained, or a weights file (default: a saved run's own weights, else pretrained)",
    )
    parser.add_argument(
        "--other-model",
        action="store_true",
        help=f"{verb} on a saved run's images with another network or weights than the run's",
    )


def _label_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="labels of a flat folder: the devkit's ILSVRC2012_validation_ground_truth.txt (with --synsets), "
        "Kaggle's LOC_val_solution.csv, or a CSV of path,label",
    )
    parser.add_argument(
        "--synsets", default=None, metavar="FILE", help="the devkit's meta.mat, or its WordNet ids in ID order"
    )


def _log_to_stderr(quiet: bool) -> None:
    """sevis logs through :mod:`logging`; the command line shows its messages plainly."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("sevis")
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dashboard":
        return _dashboard(args)
    _log_to_stderr(getattr(args, "quiet", False))
    # NOTE imported after parsing: `sevis --help` must not wait for torch.
    import sevis
    from sevis.runs.writer import Terminated

    try:
        if args.command == "extract":
            if args.device.startswith("cuda"):
                import torch

                if not torch.cuda.is_available():
                    raise sevis.SevisError("--device cuda: no CUDA device is available here")
            from sevis.jobs.settings import RunSettings

            settings = RunSettings(  # what both engines take alike
                batch_size=args.batch_size,
                workers=args.workers,
                per_class=args.per_class,
                seed=args.seed,
                layers=tuple(args.layers) if args.layers else None,
                resume=args.resume,
                overwrite=args.overwrite,
                labels=args.labels,
                synsets=args.synsets,
                distributions=args.distributions,
            )
            if args.engine == "ray":
                from sevis.jobs.ray_engine import extract_ray

                extract_ray(
                    args.model, args.weights, args.data, args.out, settings, address=args.address, device=args.device
                )
            else:
                from sevis.jobs.extraction import extract

                model = sevis.load_model(args.model, args.weights, device=args.device)
                extract(model, args.data, args.out, settings, progress=not args.quiet)
        elif args.command == "weights":
            return _weights(args)
        elif args.command == "ablate":
            return _ablate(args)
        elif args.command == "importance":
            return _importance(args)
        elif args.command == "reproduce":
            from sevis.reproduce import reproduce

            done = reproduce(
                args.paper,
                args.data,
                args.out,
                model=args.model,
                weights=args.weights,
                labels=args.labels,
                synsets=args.synsets,
                per_class=args.per_class,
                plane=args.plane,
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device,
                progress=not args.quiet,
            )
            for finding in done.findings:
                print(f"{finding.verdict:>18}  {finding.title}: {finding.measured[:300]}")
            print(f"report: {done.report}")
        else:
            from sevis.report import write_comparison, write_report

            if len(args.run) == 1 and args.ablations:
                raise sevis.SevisError("--ablations goes with several runs (`sevis ablate` writes one run's table)")
            if len(args.run) == 1:
                out = write_report(args.run[0], args.out, args.classes, args.layers, args.baseline)
            elif args.baseline is not None:
                raise sevis.SevisError("--baseline goes with one run; several runs are compared with each other")
            else:
                out = write_comparison(args.run, args.out, args.classes, args.layers, args.ablations)
            logging.getLogger("sevis").info("wrote %s", out)
    except (Terminated, KeyboardInterrupt) as stopped:
        if args.command == "reproduce":
            print("sevis reproduce: stopped; the same command continues where it stopped", file=sys.stderr)
        return 143 if isinstance(stopped, Terminated) else 130  # 128 + the signal, as a shell reports it
    except (sevis.SevisError, OSError) as err:  # a person's input or the file system, not a bug
        hint = ""
        if isinstance(err, sevis.WeightsUnavailableError) and args.command == "extract":
            hint = " Or run with --weights FILE, or --weights untrained for random weights."
        print(f"sevis {args.command}: {err}{hint}", file=sys.stderr)
        return 2
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    """``sevis dashboard``: Streamlit serves :mod:`sevis.app.main` from the installed package,
    as ``streamlit run app.py`` does from a checkout (returns only if Streamlit is missing)."""
    import os

    try:
        from streamlit.web import cli as streamlit_cli
    except ImportError:
        print('sevis dashboard: the dashboard needs Streamlit: pip install "sevis[app]"', file=sys.stderr)
        return 2
    from sevis.app import ENTRY

    if args.weights_dir:
        os.environ["SEVIS_WEIGHTS_DIR"] = args.weights_dir
    # What a checkout's .streamlit/config.toml says, as defaults the environment can change.
    os.environ.setdefault("STREAMLIT_SERVER_MAX_UPLOAD_SIZE", "512")
    os.environ.setdefault("STREAMLIT_CLIENT_TOOLBAR_MODE", "minimal")
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    os.environ.setdefault("STREAMLIT_RUNNER_POST_SCRIPT_GC", "false")  # a full collection a run stalls it ~0.3 s
    flags = {
        "server.address": args.address,
        "server.port": str(args.port),
        "server.headless": "true",  # print the address; a server has no browser to open
        "server.fileWatcherType": "none",  # the watcher trips over torch.classes
    }
    argv = ["run", str(ENTRY)] + [part for name, value in flags.items() for part in (f"--{name}", value)]
    streamlit_cli.main(argv, prog_name="streamlit")  # click exits the process when the server stops
    return 0


def _weights(args: argparse.Namespace) -> int:
    """``sevis weights list|fetch|check``; 0 on success, 1 for a failed check."""
    import sevis
    from sevis.models.weights import cached_weights, fetch_weights, file_sha256, weights_file

    if args.action == "list":
        folder = sevis.weights_dir()
        print(f"weights folder: {folder} (set SEVIS_WEIGHTS_DIR to use another)")
        known = set()
        for name in sevis.list_models():
            file = weights_file(name)
            if file is None:
                continue
            found = cached_weights(name)
            if found is not None:
                known.add(found)
                size = found.stat().st_size / 1e6
                print(f"  {name}: {found.name}, {size:.1f} MB, SHA-256 {file_sha256(found)}")
            else:
                links = "; ".join(file.manual) or ", ".join(file.sources)
                print(f"  {name}: {file.file_name} not there (sevis weights fetch {name}; or by hand: {links})")
        others = [p for p in sevis.list_weights_files() if p not in known]
        for path in others:
            print(f"  other file: {path.name}, {path.stat().st_size / 1e6:.1f} MB")
        return 0
    if args.action == "fetch":
        for name in args.models:
            if weights_file(name) is None:
                raise sevis.SevisError(f"{name}: no pretrained weights file to fetch (known: {_fetchable()})")
        for name in args.models:
            path = fetch_weights(name)
            print(f"{name}: {path} (SHA-256 {file_sha256(path)})")
        return 0
    target = args.target
    if weights_file(target) is not None or target in sevis.list_models():
        model = sevis.load_model(target)
    else:
        model = sevis.load_model(args.model or "se_resnet50", target)
    info = sevis.model_info(model)
    print(f"{info.name} with {info.weights}" + (f" (SHA-256 {info.weights_sha256})" if info.weights_sha256 else ""))
    if info.check is None:
        print("no self-check: the network does not output the 1,000 ImageNet classes, or the photographs are missing")
        return 0
    for photo in info.check.photos:
        mark = "ok  " if photo.passed else "FAIL"
        print(f"  {mark} {photo.photo}: top-5 {', '.join(photo.top5)}; expected one of {', '.join(photo.expected)}")
    print(info.check.summary())
    return 0 if info.check.passed else 1


def _table_out(args: argparse.Namespace) -> Path:
    """``--out`` of a job that writes a table: a .csv or .parquet path."""
    from pathlib import Path

    import sevis

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise sevis.SevisError(f"--out must end in .csv or .parquet, got {out.name[:80]!r}")
    return out


def _dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`_dataset_options`'s values as a job over a dataset takes them."""
    from sevis.data.labels import read_labels

    return {
        "batch_size": args.batch_size,
        "workers": args.workers,
        "per_class": args.per_class,
        "seed": args.seed,
        "progress": not args.quiet,
        "labels": read_labels(args.labels, args.synsets) if args.labels else None,
    }


def _said(model: nn.Module, failures: list, unknown: list[str], counted: str) -> None:
    """A job's unreadable files and the labels that name no class of the model, on stderr
    (a name two classes share lists them)."""
    import sevis
    from sevis.models.classes import class_candidates

    for failure in failures:
        print(f"skipped {failure.name[:200]}: {failure.reason[:200]}", file=sys.stderr)
    if not unknown:
        return
    info = sevis.model_info(model)

    def described(label: str) -> str:
        candidates = class_candidates(label, info.class_names)
        could = f" (names {len(candidates)} classes: {'; '.join(c[:60] for c in candidates[:5])})"
        return repr(label[:60]) + (could if len(candidates) > 1 else "")

    shown = ", ".join(described(x) for x in unknown[:10])
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    print(f"labels that are no class of {info.name} ({counted}): {shown}{more}", file=sys.stderr)


def _write_table(out: Path, frame: pd.DataFrame) -> None:
    from sevis import export
    from sevis._files import write_atomic

    write_atomic(out, export.frame_csv(frame) if out.suffix.lower() == ".csv" else export.frame_parquet(frame))


def _ablate(args: argparse.Namespace) -> int:
    """``sevis ablate``: the table written, and shown; unreadable files and unknown labels named."""
    import sevis
    from sevis.jobs.ablation import ablate_data, ablation_conditions

    out = _table_out(args)
    model = _run_model(args, "ablating")
    args.model = sevis.model_info(model).name
    conditions = ablation_conditions(model)
    if args.stages is not None:
        wanted = {f"stage {s}" for s in args.stages}
        absent = sorted(wanted - set(conditions))
        if absent:
            raise sevis.SevisError(f"{', '.join(absent)}: not in {args.model} (it has {', '.join(conditions)})")
        conditions = {k: v for k, v in conditions.items() if k in wanted or k in ("none", "all")}
    result = ablate_data(model, args.data, conditions, **_dataset_kwargs(args))
    _said(model, result.failures, result.unknown_labels, "their images count only in top1_kept")
    _write_table(out, result.frame())
    print(result.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    logging.getLogger("sevis").info("wrote %s", out)
    return 0


def _importance(args: argparse.Namespace) -> int:
    """``sevis importance``: the table (and the scatter) written; the correlation shown."""
    from pathlib import Path

    import sevis
    from sevis import figures
    from sevis._files import write_atomic
    from sevis.jobs.importance import importance_data

    out = _table_out(args)
    if args.figure is not None and not args.figure.lower().endswith(".html"):
        raise sevis.SevisError(f"--figure must end in .html, got {Path(args.figure).name[:80]!r}")
    model = _run_model(args, "knocking channels out")
    layers = [x.name for x in sevis.find_attention(model)]
    if args.layer not in layers:
        name = sevis.model_info(model).name
        raise sevis.SevisError(f"{args.layer[:40]!r} is no layer of {name}: {', '.join(layers)}")
    result = importance_data(model, args.data, args.layer, args.channels, **_dataset_kwargs(args))
    _said(model, result.failures, result.unknown_labels, "not in the true-class columns")
    _write_table(out, result.frame())
    corr = result.correlation()
    measure = "true class's probability" if result.labelled else "probability of the network's own top-1"
    worst = result.table.assign(cost=result.importance()).nlargest(5, "cost")
    index = result.index_name
    print(
        f"{result.layer}: {len(result.table):,} {index}s knocked out (gate set to {result.value:g}) over "
        f"{result.images:,} images ({result.labelled:,} with a class of the model); each knock-out ran "
        + {"attention": "from the layer's module on", "block": "from the layer's block on"}.get(
            result.resumed, "the whole network"
        )
    )
    print(
        f"costliest {index}s (drop in the {measure}): "
        + ", ".join(f"{int(c)} ({v:+.4f})" for c, v in zip(worst[index], worst.cost, strict=True))
    )
    print(
        f"Spearman rank correlation of selectivity and cost: rho {corr['rho']:.3f}, p {corr['p']:.3g}, "
        f"{corr['channels']:,} {index}s"
    )
    if args.figure is not None:
        measure_column = "p_true_change" if result.labelled else "p_top1_change"
        fig = figures.importance_scatter(result.table, result.layer, measure=measure_column, correlation=corr)
        write_atomic(Path(args.figure), fig.to_html(include_plotlyjs=True, full_html=True).encode())
    logging.getLogger("sevis").info("wrote %s", out)
    return 0


def _run_model(args: argparse.Namespace, doing: str) -> nn.Module:
    """The network ``sevis ablate`` or ``importance`` runs: a saved run's own (its model,
    weights and their SHA-256) unless told otherwise, else ``--model`` / ``--weights``;
    says which on stderr (``doing``: "ablating")."""
    from pathlib import Path

    import sevis
    from sevis.runs import Location
    from sevis.runs.schema import is_run, read_metadata

    data = args.data  # a run on this machine or at a URI
    if not is_run(data):
        return sevis.load_model(args.model or "se_resnet50", args.weights or "pretrained", device=args.device)
    run = read_metadata(data)
    name = Location.of(data).name[:80]
    if args.model is not None and args.model != run.model and not args.other_model:
        raise sevis.SevisError(
            f"{name} was made with {run.model[:80]}, not {args.model[:80]}: leave --model out to use "
            "the run's own network, or add --other-model to run another one on its images"
        )
    weights = args.weights
    if weights is None:
        weights = "untrained" if run.untrained else run.weights if Path(run.weights).is_file() else "pretrained"
    model = sevis.load_model(args.model or run.model, weights, device=args.device)
    info = sevis.model_info(model)
    same = info.name == run.model and info.untrained == run.untrained
    same = same and (run.weights_sha256 is None or info.weights_sha256 == run.weights_sha256)
    if not same and not args.other_model:
        raise sevis.SevisError(
            f"the weights loaded ({info.weights[:120]}, SHA-256 {str(info.weights_sha256)[:12]}) are not the ones "
            f"{name} was made with ({run.weights[:120]}, SHA-256 {str(run.weights_sha256)[:12]}): give "
            "--weights the run's file, or add --other-model"
        )
    used = "untrained, seed 0" if info.untrained else f"{info.weights[:200]}, SHA-256 {info.weights_sha256 or 'none'}"
    whose = "another network than the run's" if not same else "the run's network"
    print(f"{doing} with {info.name} ({used}): {whose}", file=sys.stderr)
    return model


def _fetchable() -> str:
    import sevis
    from sevis.models.weights import weights_file

    return ", ".join(name for name in sevis.list_models() if weights_file(name) is not None)


if __name__ == "__main__":
    sys.exit(main())
