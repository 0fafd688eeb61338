"""Single-step credit assignment on Fashion-MNIST and MNIST: the results table.

Three recipes, each run with ``cl.Simulator(net, rule).run(x, labels, CrossEntropy())``
per mini-batch and a ``torch.optim`` optimizer on ``net.parameters()``:

- ``fmnist``   MLP 784-256-256-10 tanh, Adam 1e-3, batch 128, 10 epochs, Fashion-MNIST;
               backprop / FA / DFA / Kolen-Pollack (the BioTorch comparison).
- ``lansdell`` MLP 784-50-20-10 sigmoid (Lansdell, Prakash & Kording 2019, Fig. 1),
               on Fashion-MNIST and on the MNIST-10k subset; backprop / FA / learned feedback.
- ``akrout``   MLP 784-500-10 sigmoid (Akrout et al. 2019), MNIST-10k subset;
               backprop / FA / Kolen-Pollack.

Reported: test accuracy (mean ± std over seeds) and training seconds per
epoch (the loop over mini-batches only; evaluation excluded).  The table is
written to ``benchmarks/SINGLE_STEP.md`` (temp file, then rename).

    OMP_NUM_THREADS=1 python benchmarks/single_step_fmnist.py --recipe all
    python benchmarks/single_step_fmnist.py --recipe fmnist --seeds 0 --epochs 2   # quick look
"""
from __future__ import annotations

import argparse
import gzip
import os
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import creditlab as cl
from creditlab.losses import CrossEntropy

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_10K = Path("/work/shared/data/mnist-10k")
HERE = Path(__file__).resolve().parent


@dataclass
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _from_idx(root: Path) -> tuple[torch.Tensor, ...]:
    parts = [_read_idx(root / f"{p}-{k}-idx{n}-ubyte.gz")
             for p in ("train", "t10k") for k, n in (("images", 3), ("labels", 1))]
    return tuple(torch.from_numpy(a.copy()) for a in parts)


def load(dataset: str) -> Split:
    """Images flattened to [N, 784] in [0, 1], standardised with the training mean/std; int64 labels."""
    root = FASHION_MNIST if dataset == "fashion-mnist" else MNIST_10K
    x_tr, y_tr, x_te, y_te = _from_idx(root)
    x_tr = x_tr.reshape(len(x_tr), -1).float() / 255
    x_te = x_te.reshape(len(x_te), -1).float() / 255
    mean, std = x_tr.mean(), x_tr.std()
    return Split((x_tr - mean) / std, y_tr.long(), (x_te - mean) / std, y_te.long())


@dataclass
class Run:
    accuracy: list[float] = field(default_factory=list)
    seconds_per_epoch: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)


def make_rule(name: str, seed: int, options: dict) -> cl.rules.Rule:
    kwargs = dict(options.get(name, {}))
    if name == "backprop":
        return cl.rules.Backprop()
    return cl.rules.RULES[name](seed=seed, **kwargs)


def train(sizes: list[int], activation: str, rule_name: str, data: Split, epochs: int, seed: int,
          lr: float, batch_size: int, options: dict) -> tuple[float, float, float | None]:
    """Accuracy on the test set, mean training seconds per epoch, final feedback mismatch."""
    torch.manual_seed(seed)
    net = cl.models.MLP(sizes, activation=activation, seed=seed)
    rule = make_rule(rule_name, seed, options)
    sim = cl.Simulator(net, rule)
    feedback = rule.parameters() if isinstance(rule, cl.rules.KolenPollack) and rule.lr is None else []
    opt = torch.optim.Adam([*net.parameters(), *feedback], lr=lr)
    loss = CrossEntropy()
    x, y = data.x_train, data.y_train
    n = len(x)
    generator = torch.Generator().manual_seed(seed)
    seconds = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            sim.run(x[idx], y[idx], loss)
            opt.step()
            opt.zero_grad()
        seconds += time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((net(data.x_test).argmax(-1) == data.y_test).float().mean()) * 100
    return accuracy, seconds / epochs, feedback_mismatch(net, rule)


def train_peer(sizes: list[int], activation: str, rule_name: str, data: Split, epochs: int, seed: int,
               lr: float, batch_size: int) -> tuple[float, float]:
    """The same recipe in BioTorch (Sanfiz & Akrout 2021), autograd with its FA/DFA layers."""
    torch.manual_seed(seed)
    net = peer_net(sizes, activation, rule_name)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = data.x_train, data.y_train
    generator = torch.Generator().manual_seed(seed)
    seconds = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            loss_fn(net(xb, targets=yb, loss_function=loss_fn), yb).backward()
            opt.step()
            opt.zero_grad()
        seconds += time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        accuracy = float((net(data.x_test).argmax(-1) == data.y_test).float().mean()) * 100
    return accuracy, seconds / epochs


def peer_net(sizes: list[int], activation: str, rule_name: str) -> torch.nn.Module:
    from biotorch.module.biomodule import BioModule

    act = {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}[activation]
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [torch.nn.Linear(a, b)] + ([act()] if i < len(sizes) - 2 else [])
    mode = {"backprop": "backpropagation", "fa": "fa", "dfa": "dfa"}[rule_name]
    return BioModule(torch.nn.Sequential(*layers), mode=mode, output_dim=sizes[-1])


def interleaved_timing(data: Split, rounds: int, chunk: int = 20, batch_size: int = 128) -> list[str]:
    """ms per mini-batch of creditlab and BioTorch on the fmnist recipe, alternating chunks of
    ``chunk`` batches for ``rounds`` rounds so both see the same machine load; medians reported."""
    recipe = RECIPES["fmnist"]
    lines = ["<!-- recipe:interleaved -->",
             f"### Per-batch time, creditlab vs BioTorch, interleaved ({rounds} rounds × {chunk} batches each, "
             "medians; fmnist recipe)", "",
             "| rule | creditlab ms / batch | BioTorch ms / batch | ratio |", "|---|---|---|---|"]
    x, y = data.x_train, data.y_train
    loss, peer_loss = CrossEntropy(), torch.nn.CrossEntropyLoss()
    for rule_name in ("backprop", "fa", "dfa"):
        net = cl.models.MLP(recipe["sizes"], activation=recipe["activation"], seed=0)
        sim = cl.Simulator(net, make_rule(rule_name, 0, RULE_OPTIONS))
        opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
        peer = peer_net(recipe["sizes"], recipe["activation"], rule_name)
        peer_opt = torch.optim.Adam(peer.parameters(), lr=recipe["lr"])
        ours, theirs = [], []
        for r in range(rounds):
            batches = torch.randint(0, len(x), (chunk, batch_size))
            start = time.perf_counter()
            for idx in batches:
                sim.run(x[idx], y[idx], loss)
                opt.step()
                opt.zero_grad()
            ours.append((time.perf_counter() - start) / chunk * 1e3)
            start = time.perf_counter()
            for idx in batches:
                xb, yb = x[idx], y[idx]
                peer_loss(peer(xb, targets=yb, loss_function=peer_loss), yb).backward()
                peer_opt.step()
                peer_opt.zero_grad()
            theirs.append((time.perf_counter() - start) / chunk * 1e3)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"interleaved {rule_name}: creditlab {a:.2f} ms, BioTorch {b:.2f} ms", flush=True)
        lines.append(f"| {rule_name} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    return lines + [""]


def feedback_mismatch(net: cl.models.MLP, rule: cl.rules.Rule) -> float | None:
    """Mean ‖B − W‖/‖W‖ over the layers with a feedback matrix of W's shape (or Wᵀ's)."""
    if isinstance(rule, (cl.rules.FA, cl.rules.LearnedFeedback)) and not (
            isinstance(rule, cl.rules.LearnedFeedback) and rule.mode == "direct"):
        errors = []
        for b, layer in zip(rule.feedback, net.layers[1:]):
            w = layer.weight.detach()
            b = b if b.shape == w.shape else b.t()
            errors.append(float((b - w).norm() / w.norm()))
        return statistics.mean(errors)
    return None


RECIPES = {
    "fmnist": dict(title="Fashion-MNIST, MLP 784-256-256-10 tanh, Adam 1e-3, batch 128",
                   sizes=[784, 256, 256, 10], activation="tanh", datasets=["fashion-mnist"],
                   rules=["backprop", "fa", "dfa", "kp"], epochs=10, lr=1e-3),
    "lansdell": dict(title="Lansdell et al. 2019 net, MLP 784-50-20-10 sigmoid, Adam 1e-3, batch 128",
                     sizes=[784, 50, 20, 10], activation="sigmoid", datasets=["fashion-mnist", "mnist-10k"],
                     rules=["backprop", "fa", "learned-feedback"], epochs=10, lr=1e-3),
    "akrout": dict(title="Akrout et al. 2019 net, MLP 784-500-10 sigmoid, Adam 1e-3, batch 128",
                   sizes=[784, 500, 10], activation="sigmoid", datasets=["mnist-10k"],
                   rules=["backprop", "fa", "kp"], epochs=20, lr=1e-3),
}

DATASET_LABELS = {"fashion-mnist": "Fashion-MNIST", "mnist-10k": "MNIST-10k subset (8k train / 2k test)"}

RULE_OPTIONS = {"kp": {"weight_decay": 1e-4},
                "learned-feedback": {"noise_std": 0.01, "feedback_lr": 1.0}}


def _fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def run_recipe(name: str, seeds: list[int], epochs: int | None, batch_size: int,
               peer: bool = False) -> list[str]:
    recipe = RECIPES[name]
    n_epochs = epochs or recipe["epochs"]
    lines = [f"<!-- recipe:{name} -->",
             f"### {recipe['title']}, {n_epochs} epochs, seeds {', '.join(map(str, seeds))}", ""]
    for dataset in recipe["datasets"]:
        data = load(dataset)
        lines += [f"**{DATASET_LABELS[dataset]}**", "",
                  "| rule | test accuracy (%) | s / epoch | ‖B − W‖/‖W‖ at end |", "|---|---|---|---|"]
        for rule_name in recipe["rules"]:
            run = Run()
            for seed in seeds:
                acc, sec, mismatch = train(recipe["sizes"], recipe["activation"], rule_name, data,
                                           n_epochs, seed, recipe["lr"], batch_size, RULE_OPTIONS)
                run.accuracy.append(acc)
                run.seconds_per_epoch.append(sec)
                if mismatch is not None:
                    run.extra.append(mismatch)
                print(f"{name} {dataset} {rule_name} seed={seed}: acc={acc:.2f}% {sec:.2f} s/epoch"
                      + (f" mismatch={mismatch:.3f}" if mismatch is not None else ""), flush=True)
            lines.append(f"| {rule_name} | {_fmt(run.accuracy, 2)} | {_fmt(run.seconds_per_epoch, 2)} "
                         f"| {_fmt(run.extra, 3)} |")
            if peer and rule_name in ("backprop", "fa", "dfa"):
                lines.append(peer_row(recipe, rule_name, data, seeds, n_epochs, batch_size))
        lines.append("")
    return lines


def peer_row(recipe: dict, rule_name: str, data: Split, seeds: list[int], epochs: int, batch_size: int) -> str:
    """A BioTorch row, trained in the same process and loop right after creditlab's."""
    run = Run()
    for seed in seeds:
        acc, sec = train_peer(recipe["sizes"], recipe["activation"], rule_name, data, epochs, seed,
                              recipe["lr"], batch_size)
        run.accuracy.append(acc)
        run.seconds_per_epoch.append(sec)
        print(f"  BioTorch {rule_name} seed={seed}: acc={acc:.2f}% {sec:.2f} s/epoch", flush=True)
    return f"| BioTorch {rule_name} | {_fmt(run.accuracy, 2)} | {_fmt(run.seconds_per_epoch, 2)} | – |"


def merge_sections(path: Path, header: list[str], sections: dict[str, list[str]]) -> str:
    """The results file with ``sections`` (by recipe) replaced and other recipes' sections kept."""
    kept: dict[str, str] = {}
    if path.exists():
        for chunk in path.read_text().split("<!-- recipe:")[1:]:
            name, _, body = chunk.partition(" -->")
            kept[name] = f"<!-- recipe:{name} -->{body}".rstrip() + "\n"
    for name, lines in sections.items():
        kept[name] = "\n".join(lines).rstrip() + "\n"
    order = ["interleaved", *RECIPES]
    return "\n".join(header) + "\n" + "\n".join(kept[n] for n in order if n in kept)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=[*RECIPES, "all", "none"], default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override each recipe's epoch count")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--peer", action="store_true",
                        help="also train BioTorch (importable biotorch) side by side for backprop/FA/DFA")
    parser.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                        help="time creditlab and BioTorch per batch in alternating chunks (needs biotorch)")
    parser.add_argument("--out", type=Path, default=HERE / "SINGLE_STEP.md")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = [] if args.recipe == "none" else list(RECIPES) if args.recipe == "all" else [args.recipe]
    lines = ["# Single-step credit assignment: results", "",
             "Generated by `python benchmarks/single_step_fmnist.py` (each section says its epochs and seeds) "
             f"with torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), on a CPU shared with "
             "other jobs (timings are noisy; compare within one table only).  Accuracy: mean ± std over "
             "seeds.  s / epoch: the training loop only.  BioTorch rows (`--peer`) train the same recipe with "
             "BioTorch 0.0.16 in the same process right after creditlab's.  Rule options: "
             + ", ".join(f"{k} {v}" for k, v in RULE_OPTIONS.items()) + ".", ""]
    if args.interleaved:
        section = interleaved_timing(load("fashion-mnist"), args.interleaved)
        write_atomic(args.out, merge_sections(args.out, lines, {"interleaved": section}))
    for name in names:
        section = run_recipe(name, args.seeds, args.epochs, args.batch_size, args.peer)
        write_atomic(args.out, merge_sections(args.out, lines, {name: section}))
        print("\n".join(section), flush=True)


if __name__ == "__main__":
    main()
