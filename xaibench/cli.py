"""The ``xaibench`` command: run, list, leaderboard (and the executors/report commands).

User mistakes print one line and exit with a documented code (see :mod:`xaibench.errors`);
Ctrl-C keeps everything already stored and exits 130.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .atomic import atomic_write, storage_error
from .errors import EXIT_CELLS_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, XaibenchError
from .suite import Entry


def _warn_failures(registry) -> None:
    for f in registry.failures:
        print(f"xaibench: warning: {f}", file=sys.stderr)


def _device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise XaibenchError("--device cuda: no CUDA device is visible; use --device cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise XaibenchError(f"--device {name}: use cpu, cuda or cuda:N")
    return name


def _dataset_override(spec: str, registry) -> Entry:
    """``NAME`` or ``NAME:PATH`` (PATH goes to the plugin's ``PATH_OPTION``, e.g. a manifest)."""
    name, _, arg = spec.partition(":")
    rec = registry.get("dataset", name)
    opts = {}
    if arg:
        import importlib

        mod = importlib.import_module(rec.factory.__module__)
        key = getattr(mod, "PATH_OPTION", None)
        if key is None:
            raise XaibenchError(f"--dataset {spec}: dataset {name!r} takes no path argument; use --dataset {name}")
        opts[key] = str(Path(arg).resolve())
    return Entry("dataset", name, opts, name)


def _folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` resolved, checked to be a folder (or not yet there: it is created)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise XaibenchError(f"{flag} {path} is a file, not a folder; give a folder (it is created if missing)")
    return p


def _load_suite(args, registry):
    from .suite import resolve

    suite = resolve(args.suite, registry)
    if getattr(args, "seed", None) is not None:
        suite = suite.with_seeds(tuple(args.seed))
    if getattr(args, "dataset", None):
        suite = suite.with_datasets(tuple(_dataset_override(d, registry) for d in args.dataset))
    return suite


def _executor(args, suite, registry) -> str:
    """The executor's name (``--executor``, else the suite's ``[executor] name``), checked
    against the registered executors and their settings before any work."""
    from .executors import lookup, resolve

    name = args.executor or suite.executor.get("name", "local")
    lookup(registry, name, "--executor" if args.executor else "suite [executor] name =")
    resolve(name, suite.executor, args, registry)  # unknown keys and bad values fail here
    return name


def cmd_run(args) -> int:
    from .cells import RunConfig
    from .lock import FolderLock
    from .plugins import instantiate, load

    device = _device(args.device)
    registry = load(args.plugin)
    _warn_failures(registry)
    suite = _load_suite(args, registry)
    for kind_entries in (suite.datasets, suite.backbones, suite.attacks, suite.explainers, suite.metrics):
        for e in kind_entries:
            registry.get(e.kind, e.name)  # unknown names fail before any work
            instantiate(registry, e.kind, e.name, dict(e.options))  # and wrong option names or types
    out = _folder(args.out or f"xaibench-results/{suite.name}")
    cfg = RunConfig(suite=suite, out=out, plugin_files=tuple(args.plugin), device=device,
                    force=args.force, progress=not args.quiet)
    executor = _executor(args, suite, registry)
    with FolderLock(out, f"xaibench run --suite {args.suite}", wait=args.wait):
        from .executors import run_with

        summary = run_with(executor, cfg, args, registry)
        print(f"{suite.name}: {summary.line()}; results in {out}")
        for note in summary.notes:
            print(f"  note: {note}")
        for f in summary.failed[:20]:
            print(f"  failed: {f}")
        if not args.no_leaderboard:
            from .leaderboard.build import write_all

            paths = write_all(out, suite.name, tuple(args.plugin))
            print(f"leaderboard: {', '.join(str(p) for p in paths)}")
    return EXIT_CELLS_FAILED if summary.failed else EXIT_OK


# --- listing plugins and their options: list [KIND] [--options] [--markdown], describe NAME ---
def cmd_list(args) -> int:
    from .describe import markdown, normalise_kind, option_lines
    from .plugins import KINDS, load

    registry = load(args.plugin)
    if args.markdown:
        print(markdown(registry), end="")
        return EXIT_OK
    kinds = [normalise_kind(args.kind)] if args.kind else list(KINDS)
    for kind in kinds:
        print(f"{kind}s:")
        for name in registry.names(kind):
            rec = registry.records[kind][name]
            print(f"  {name:24s} {rec.description}  [{registry.provider(kind, name)}]")
            if args.options:
                for line in option_lines(registry, kind, name):
                    print(line)
    _warn_failures(registry)
    return EXIT_OK


def cmd_describe(args) -> int:
    from .describe import describe
    from .plugins import load

    registry = load(args.plugin)
    spec = f"{args.name[0]}:{args.name[1]}" if len(args.name) == 2 else args.name[0]
    if len(args.name) > 2:
        raise XaibenchError("describe: give NAME, KIND:NAME or KIND NAME")
    print(describe(registry, spec))
    _warn_failures(registry)
    return EXIT_OK


def _add_list_parsers(sub) -> None:
    ls = sub.add_parser("list", help="list registered plugins of every kind (--options: with their options)")
    ls.add_argument("kind", nargs="?",
                    help="explainer(s), metric(s), dataset(s), backbone(s), attack(s), suite(s) or executor(s)")
    ls.add_argument("--options", action="store_true", help="also print every plugin's options (type = default, help)")
    ls.add_argument("--markdown", action="store_true", help="print the options of every plugin as docs/options.md")
    ls.add_argument("--plugin", action="append", default=[], metavar="FILE")
    ls.set_defaults(func=cmd_list)
    ds = sub.add_parser("describe", help="a plugin's description and options (name, type, default, help)")
    ds.add_argument("name", nargs="+", metavar="NAME", help="plugin name, or KIND:NAME / KIND NAME if ambiguous")
    ds.add_argument("--plugin", action="append", default=[], metavar="FILE")
    ds.set_defaults(func=cmd_describe)


TRAINING_ONLY = ("mode", "weights", "key_map", "lr", "epochs", "batch_size", "patience", "weight_decay", "dropout")


def cmd_pretrain(args) -> int:
    from .plugins import instantiate, load
    from .pretrain import PretrainSettings, pretrain

    registry = load(args.plugin)
    _warn_failures(registry)
    if not args.suite and not args.dataset:
        raise XaibenchError("pretrain: give --dataset NAME[:PATH] or --suite NAME (its first dataset and backbone)")
    suite = _load_suite(args, registry) if args.suite else None
    ds = suite.datasets[0] if suite else _dataset_override(args.dataset[0], registry)
    bb = suite.backbones[0] if suite and not args.backbone else Entry("backbone", args.backbone or "resnet18", {})
    opts = {k: v for k, v in dict(bb.options).items() if k not in TRAINING_ONLY}
    if args.width is not None:
        opts["width"] = args.width
    settings = PretrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                temperature=args.temperature, seed=args.seed_ssl)
    cache = Path(args.cache_dir)
    splits = instantiate(registry, "dataset", ds.name, dict(ds.options)).load(
        seed=suite.data_seed if suite else 0, cache_dir=cache / "datasets")
    builder = instantiate(registry, "backbone", bb.name, opts)
    path, trained = pretrain(lambda: builder(num_classes=2, image_size=splits.image_size), splits.train.images,
                             {"name": bb.name, "options": opts, "dataset": ds.name, "dataset_options": dict(ds.options)},
                             settings, Path(args.out) if args.out else None, cache, _device(args.device),
                             progress=not args.quiet)
    shown = ", ".join(f"{k} = {v!r}" for k, v in opts.items()).replace("'", '"')
    print(f"pretrain: SimCLR encoder of {bb.name} on {len(splits.train)} training images of {ds.name} "
          f"{'trained' if trained else 'found in the cache'}: {path}")
    print(f'use it: [[backbones]] name = "{bb.name}", options = {{ mode = "probe", weights = "{path}"'
          + (f", {shown}" if shown else "") + " }")
    return EXIT_OK


def _add_pretrain_parser(sub) -> None:
    pt = sub.add_parser("pretrain", help="SimCLR-pretrain an encoder on a dataset's training images (for mode = probe)")
    pt.add_argument("--suite", help="take the suite's first dataset and backbone (and its data_seed)")
    pt.add_argument("--dataset", action="append", metavar="NAME[:PATH]", help="the dataset (default: the suite's)")
    pt.add_argument("--backbone", help="backbone plugin (default: the suite's, else resnet18)")
    pt.add_argument("--width", type=float, help="channel multiplier of the backbone (a probe must use the same)")
    pt.add_argument("--epochs", type=int, default=30)
    pt.add_argument("--batch-size", type=int, default=64)
    pt.add_argument("--lr", type=float, default=1e-3)
    pt.add_argument("--temperature", type=float, default=0.2, help="NT-Xent temperature (default 0.2)")
    pt.add_argument("--seed-ssl", type=int, default=0, help="seed of the augmentations and initialisation")
    pt.add_argument("--out", help="also copy the encoder weights to this file")
    pt.add_argument("--cache-dir", default="xaibench-results/pretrain", help="cache folder (content-hashed files)")
    pt.add_argument("--device", default="auto")
    pt.add_argument("--quiet", action="store_true")
    pt.add_argument("--plugin", action="append", default=[], metavar="FILE")
    pt.set_defaults(func=cmd_pretrain)
# --- end of listing and pretraining


def cmd_leaderboard(args) -> int:
    from .leaderboard.build import render_store

    if not args.out and not args.suite:
        raise XaibenchError("leaderboard: give --out DIR (a results folder) or --suite NAME")
    out = _folder(args.out or f"xaibench-results/{args.suite}")
    if args.publish:
        from .leaderboard.build import publish
        from .names import bad_name

        name = args.suite or out.resolve().name
        if (why := bad_name(name)) is not None:  # it becomes DIR/NAME.csv
            raise XaibenchError(f"leaderboard --suite: {why}")
        _folder(args.publish, "--publish")
        cmd = f"xaibench run --suite {name}" + (f" && xaibench leaderboard --suite {name} --publish {args.publish}")
        for p in publish(out, Path(args.publish), name, args.command or cmd, tuple(args.plugin), suite=args.suite):
            print(p)
        return EXIT_OK
    text = render_store(out, args.format, suite=args.suite, plugin_files=tuple(args.plugin))
    if args.output:
        atomic_write(args.output, text)
    else:
        print(text)
    return EXIT_OK


def cmd_status(args) -> int:
    from .status import collect

    for line in collect(_folder(args.out)).lines():
        print(line)
    return EXIT_OK


def cmd_merge(args) -> int:
    from .merge import merge

    if args.rtol < 0:
        raise XaibenchError(f"merge --rtol {args.rtol}: must be >= 0")
    from .lock import FolderLock

    out = _folder(args.out)
    with FolderLock(out, "xaibench merge"):
        rep = merge([Path(s) for s in args.sources], out, rtol=args.rtol)
    for line in rep.conflicts + rep.refused[:20]:
        print(line)
    print(rep.line(Path(args.out)))
    if rep.unreadable:
        return EXIT_USAGE
    return EXIT_CELLS_FAILED if rep.conflicts or rep.refused else EXIT_OK


def cmd_report(args) -> int:
    from .report import build_report

    if args.images < 1:
        raise XaibenchError(f"report --images {args.images}: must be at least 1")
    _folder(args.out)
    publish = _folder(args.publish, "--publish") if args.publish else None
    command = f"xaibench report --out {args.out}" + (f" --suite {args.suite}" if args.suite else "") + \
        (f" --publish {args.publish}" if args.publish else "")
    path = build_report(Path(args.out), suite=args.suite, plugin_files=tuple(args.plugin), n_images=args.images,
                        publish=publish, command=command)
    print(f"report: {path}; figures in {Path(args.out) / 'figures'}" + (f"; PNGs published in {publish}" if publish else ""))
    return EXIT_OK


def _add_run_parser(sub) -> None:
    """`run`: the suite, where results go, and the executor's resources."""
    r = sub.add_parser("run", help="score every cell of a suite and write the leaderboard")
    r.add_argument("--suite", required=True, help="a built-in suite name (see `xaibench list suite`) or a .toml path")
    r.add_argument("--out", help="results folder (default xaibench-results/SUITE)")
    r.add_argument("--plugin", action="append", default=[], metavar="FILE", help="a single-file plugin (repeatable)")
    r.add_argument("--seed", type=int, action="append", help="training seed(s), replacing the suite's (repeatable)")
    r.add_argument("--dataset", action="append", metavar="NAME[:PATH]",
                   help="replace the suite's datasets, e.g. nifti:path/to/manifest.csv (repeatable)")
    r.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    r.add_argument("--force", action="store_true", help="recompute cells that are already stored")
    r.add_argument("--wait", action="store_true", help="if another run holds the results folder, wait for it")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--no-leaderboard", action="store_true", help="do not write leaderboard files after the run")
    r.add_argument("--executor", metavar="NAME", help="where cells run: local (default), dask, slurm, a plugin's")
    r.add_argument("--dask-address", help="dask scheduler address (default: start a LocalCluster)")
    x = r.add_argument_group("executor resources (override the suite's [executor] table; see docs/scale-out.md)")
    x.add_argument("--workers", type=int, help="dask: LocalCluster worker processes (default 2)")
    x.add_argument("--partition", help="slurm: partition")
    x.add_argument("--gpus", type=int, help="slurm: GPUs per job")
    x.add_argument("--cpus", type=int, help="slurm: CPUs per job")
    x.add_argument("--mem-gb", type=float, help="slurm: memory per job in GB")
    x.add_argument("--time-min", type=int, help="slurm: time limit per job in minutes")
    x.add_argument("--max-parallel", type=int, help="slurm: jobs of one stage running at once")
    r.set_defaults(func=cmd_run)


def _add_leaderboard_parser(sub) -> None:
    """`leaderboard`: render or publish the tables of a results folder."""
    lb = sub.add_parser("leaderboard", help="render the leaderboard of a results folder")
    lb.add_argument("--out", help="results folder")
    lb.add_argument("--suite", help="suite name (results in xaibench-results/NAME)")
    lb.add_argument("--format", default="md", choices=["md", "latex", "csv", "html"])
    lb.add_argument("--output", help="write to this file instead of standard output")
    lb.add_argument("--publish", metavar="DIR", help="write DIR/SUITE.{csv,md,tex} (+ figures) for publication")
    lb.add_argument("--command", help="with --publish: the regenerating command to print in the Markdown")
    lb.add_argument("--plugin", action="append", default=[], metavar="FILE",
                    help="a single-file plugin the run used (its explainers' baseline kinds, metrics' families)")
    lb.set_defaults(func=cmd_leaderboard)


def _add_status_parser(sub) -> None:
    """`status`: what a results folder holds and what is still pending."""
    st = sub.add_parser("status", help="pending / running / done / failed cells and jobs of a results folder")
    st.add_argument("--out", required=True, help="results folder")
    st.set_defaults(func=cmd_status)


def _add_merge_parser(sub) -> None:
    """`merge`: combine results folders written on different machines."""
    mg = sub.add_parser("merge", help="merge results folders from different machines (conflicts are reported)")
    mg.add_argument("sources", nargs="+", metavar="DIR", help="results folders to merge")
    mg.add_argument("--out", required=True, help="folder to merge into (created if missing)")
    mg.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for equal values (default 0: exact)")
    mg.set_defaults(func=cmd_merge)


def _add_report_parser(sub) -> None:
    """`report`: the HTML report and its figures."""
    rp = sub.add_parser("report", help="write a self-contained HTML report with figures (PNG + PDF)")
    rp.add_argument("--out", required=True, help="results folder; writes OUT/report/report.html and OUT/figures/")
    rp.add_argument("--suite", help="only this suite's results (default: every suite in the folder)")
    rp.add_argument("--plugin", action="append", default=[], metavar="FILE",
                    help="a single-file plugin the run used (needed to redraw its images)")
    rp.add_argument("--images", type=int, default=4, help="images per heatmap grid (default 4)")
    rp.add_argument("--publish", metavar="DIR", help="also copy every figure's PNG with a captioned README.md into DIR")
    rp.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    """The command line; one function per subcommand, added in the order `--help` lists them."""
    p = argparse.ArgumentParser(prog="xaibench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)
    _add_list_parsers(sub)
    _add_pretrain_parser(sub)
    _add_leaderboard_parser(sub)
    _add_status_parser(sub)
    _add_merge_parser(sub)
    _add_report_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    try:
        return int(args.func(args) or 0)
    except XaibenchError as exc:
        print(f"xaibench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `xaibench list | head`: the reader left; not an error of ours
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return 0
    except OSError as exc:  # a full or read-only disk reached outside the atomic writers
        err = storage_error(exc, exc.filename or "the results folder")
        if err is None:
            raise
        print(f"xaibench: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("xaibench: interrupted; finished cells are stored, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
