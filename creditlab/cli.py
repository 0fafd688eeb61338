"""The ``creditlab`` command.

    creditlab demo [--steps N] [--out DIR]
    creditlab train --model {lif,alif,rate} --rule NAME --task NAME --steps N --batch-size B
                    --lr LR --run-dir DIR [--resume] [--seed S]
    creditlab plot RUN_DIR [--out DIR]
    creditlab compare --task NAME --rules bptt,rtrl,eprop,rflo,node-perturbation [--steps N] [--out DIR]

Each subcommand is a pair ``add_<name>(subparsers)`` / ``run_<name>(args) -> int``
registered in :data:`SUBCOMMANDS`.  Bad input — an unknown model, rule or
task, a number out of range, a run directory that cannot be used — ends with
exit status 2 and a one-line message on stderr.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import torch

PROG = "creditlab"
#: ``--model`` choices: model class and the constructor arguments that differ between them
MODEL_CHOICES = ("lif", "alif", "rate", "mlp")
#: exit status for bad input, as argparse uses
USAGE_ERROR = 2


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{PROG}: error: {message}\n")


# -- argument types ------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def seed_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0, got {value}")
    return value


# -- building what a run trains --------------------------------------------------------
def model_kwargs(name: str, task: Any, n_rec: int, seed: int) -> tuple[str, dict[str, Any]]:
    """Class name and constructor arguments of the ``--model`` choice, sized for ``task``.

    ``alif`` is Bellec et al.'s LSNN mix: half the neurons adaptive.
    """
    from .compare import model_spec

    try:
        cls, kwargs = model_spec(name, task, n_rec, seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return cls.__name__, kwargs


def build_model(class_name: str, kwargs: dict[str, Any]) -> Any:
    from . import models

    cls = getattr(models, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, models.Model)):
        raise UsageError(f"unknown model class {class_name!r} (not in creditlab.models)")
    return cls(**kwargs)


def build_task(name: str, seed: int) -> Any:
    from . import compare

    try:
        return compare.build_task(name, seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_rule(name: str) -> Any:
    from . import compare

    try:
        return compare.build_rule(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except TypeError as exc:
        raise UsageError(f"rule {name!r} cannot be built with default settings: {exc}") from None


# -- demo ------------------------------------------------------------------------------
def add_demo(subparsers: Any) -> None:
    from .demo import DemoSettings

    p = subparsers.add_parser("demo", help="train a small LIF/ALIF network on evidence accumulation and plot it",
                              description="Train 40 LIF + 40 ALIF neurons with surrogate gradients on a short "
                                          "evidence-accumulation task; print a results table and write figures.")
    defaults = DemoSettings()
    p.add_argument("--steps", type=positive_int, default=defaults.steps, help="training steps (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--seed", type=seed_int, default=defaults.seed)
    p.add_argument("--out", default="demo-output", help="directory for the figures (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, format_table, run_demo as demo

    settings = DemoSettings(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    try:
        result = demo(settings, out=args.out, progress=not args.quiet)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    print(format_table(result))
    print(f"\nfigures written to {Path(args.out).resolve()}:")
    for label, path in result.files.items():
        print(f"  {label:<15} {path}")
    return 0


# -- train -----------------------------------------------------------------------------
def add_train(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train a model with a rule on a task, with checkpoints",
                              description="Train and log to RUN_DIR (metrics.jsonl, config.json, checkpoint.pt).")
    p.add_argument("--model", default="alif", help=f"one of {', '.join(MODEL_CHOICES)} (default %(default)s)")
    p.add_argument("--rule", required=True, help="a learning rule by name (creditlab.rules.RULES)")
    p.add_argument("--task", required=True, help="a task by name (creditlab.tasks.TASKS)")
    p.add_argument("--steps", type=positive_int, default=100)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default %(default)s)")
    p.add_argument("--n-rec", type=positive_int, default=100, help="recurrent units (default %(default)s)")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--checkpoint-every", type=positive_int, default=50)
    p.add_argument("--eval-every", type=positive_int, default=None, help="held-out evaluation every N steps")
    p.add_argument("--alignment-every", type=positive_int, default=None,
                   help="cosine with the exact gradient every N steps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from .training import prepare_training

    rule = build_rule(args.rule)
    task = build_task(args.task, args.seed)
    class_name, kwargs = model_kwargs(args.model, task, args.n_rec, args.seed)
    try:
        model = build_model(class_name, kwargs)
        rule.attach(model)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    torch.manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    try:
        run = prepare_training(model, rule, task, steps=args.steps, optimizer=optimizer, run_dir=args.run_dir,
                               batch_size=args.batch_size, resume=args.resume, eval_every=args.eval_every,
                               alignment_every=args.alignment_every, checkpoint_every=args.checkpoint_every,
                               progress=not args.quiet, model_kwargs=kwargs)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    try:
        history = run.execute()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue with --resume (last checkpoint in {args.run_dir})", file=sys.stderr)
        return 130
    if history:
        last = history[-1]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                          if isinstance(v, float) and k not in ("step", "seconds"))
        print(f"step {last['step']}: {shown}")
    print(f"run written to {Path(args.run_dir).resolve()}")
    return 0


# -- plot ------------------------------------------------------------------------------
def add_plot(subparsers: Any) -> None:
    p = subparsers.add_parser("plot", help="plot a run directory written by `creditlab train`",
                              description="Learning curve from metrics.jsonl; spike raster and membrane traces "
                                          "of the checkpointed model on one fresh trial when it can be rebuilt.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", default=None, help="directory for the figures (default: RUN_DIR)")


def _rebuild(run_dir: Path, config: dict[str, Any]) -> tuple[Any, Any] | str:
    """(model with checkpoint weights, task) or the reason they cannot be rebuilt."""
    from .training import CHECKPOINT, load_checkpoint

    model_cfg, task_cfg = config.get("model") or {}, config.get("task") or {}
    if not model_cfg.get("kwargs"):
        return "config.json does not record the model's constructor arguments"
    if not (run_dir / CHECKPOINT).is_file():
        return f"no {CHECKPOINT}"
    try:
        model = build_model(model_cfg["class"], model_cfg["kwargs"])
        task = build_task(task_cfg.get("name", ""), int(task_cfg.get("seed", 0)) + 1)
    except (UsageError, ValueError, TypeError) as exc:
        return str(exc)
    if (task.n_in, task.n_out) != (model.n_in, model.n_out):
        return f"task {task.name!r} with default settings does not fit the model's sizes"
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT)["model"])
    return model, task


def _state_figures(model: Any, task: Any, out: Path) -> dict[str, Path]:
    from . import viz
    from .simulator import Simulator

    files: dict[str, Path] = {}
    x, _ = task.sample(1)
    if model.kind == "spiking":
        with torch.no_grad():
            rec = Simulator(model, monitors=("spikes", "v")).run(x).record
        files["raster"] = out / "raster.png"
        viz.raster(rec.spikes[:, 0], model.dt, populations=viz.lif_populations(model), path=files["raster"])
        files["membrane"] = out / "membrane.png"
        viz.traces(rec.v[:, 0, :4], model.dt, threshold=model.v_th, path=files["membrane"])
    elif model.kind == "rate":
        with torch.no_grad():
            rec = Simulator(model, monitors=("r",)).run(x).record
        files["rates"] = out / "rates.png"
        viz.traces(rec.r[:, 0, :8], model.dt, ylabel="rate", path=files["rates"])
    return files


def run_plot(args: argparse.Namespace) -> int:
    from . import viz
    from .training import read_config, read_metrics

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"RUN_DIR {str(run_dir)!r} is not a directory")
    out = Path(args.out) if args.out else run_dir
    try:
        config = read_config(run_dir)
        history = read_metrics(run_dir)
        out.mkdir(parents=True, exist_ok=True)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if not history:
        raise UsageError(f"{run_dir} has an empty metrics.jsonl: nothing trained yet")
    title = f"{config.get('rule')} on {(config.get('task') or {}).get('name')}"
    files = {"learning curve": out / "learning_curve.png"}
    viz.learning_curve(history, title=title, path=files["learning curve"])
    if any("cosine" in row for row in history):
        files["alignment"] = out / "alignment.png"
        viz.alignment({config.get("rule", "rule"): history}, path=files["alignment"])
    rebuilt = _rebuild(run_dir, config)
    if isinstance(rebuilt, str):
        print(f"{PROG}: no state figures ({rebuilt})", file=sys.stderr)
    elif rebuilt[0].kind not in ("spiking", "rate"):
        print(f"{PROG}: no state figures (a {rebuilt[0].kind} model has no state over time)", file=sys.stderr)
    else:
        files.update(_state_figures(*rebuilt, out))
    for label, path in files.items():
        print(f"{label:<15} {path}")
    return 0


# -- compare ---------------------------------------------------------------------------
def add_compare(subparsers: Any) -> None:
    p = subparsers.add_parser("compare", help="train several rules on the same task and seeds; one table",
                              description="Each rule trains the same initial network on the same task stream, "
                                          "in its own process; prints final metrics, mean cosine to the exact "
                                          "gradient, time per step and peak memory, and writes plots.")
    p.add_argument("--task", required=True, help="a task by name (creditlab.tasks.TASKS)")
    p.add_argument("--rules", required=True, help="comma-separated rule names, e.g. bptt,rtrl,eprop,rflo")
    p.add_argument("--model", default=None, help=f"one of {', '.join(MODEL_CHOICES)} (default: one all rules train)")
    p.add_argument("--steps", type=positive_int, default=200)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default %(default)s)")
    p.add_argument("--n-hidden", type=positive_int, default=32, help="hidden/recurrent units (default %(default)s)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--align-every", type=positive_int, default=10,
                   help="cosine with the exact gradient every N steps (default %(default)s)")
    p.add_argument("--out", default="compare-output", help="directory for the table, JSON and plots")
    p.add_argument("--in-process", action="store_true",
                   help="run all rules in this process (faster start; peak memory is then not per rule)")


def run_compare(args: argparse.Namespace) -> int:
    import json

    from . import compare
    from .training import atomic_write_text

    names = [r.strip() for r in args.rules.split(",") if r.strip()]
    try:
        runs = compare.compare(args.task, names, model=args.model, steps=args.steps,
                               batch_size=args.batch_size, lr=args.lr, n_hidden=args.n_hidden,
                               seed=args.seed, align_every=args.align_every, isolate=not args.in_process)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    table = compare.table(runs)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.json", json.dumps(compare.as_json(runs), indent=2) + "\n")
    atomic_write_text(out / "compare.md", f"task {args.task}, {args.steps} steps, batch {args.batch_size}, "
                                          f"lr {args.lr}, seed {args.seed}\n\n{table}\n")
    for path in [out / "compare.json", out / "compare.md", *compare.plot(runs, out)]:
        print(path)
    return 0


#: name → (add the subparser, run it); a new subcommand is one more entry
SUBCOMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "demo": (add_demo, run_demo),
    "train": (add_train, run_train),
    "plot": (add_plot, run_plot),
    "compare": (add_compare, run_compare),
}


def make_parser() -> Parser:
    from . import __version__

    parser = Parser(prog=PROG, description="Spiking and recurrent networks with plug-in learning rules.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add, run) in SUBCOMMANDS.items():
        add(subparsers)
        subparsers.choices[name].set_defaults(handler=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``creditlab`` command; returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
