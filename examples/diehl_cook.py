"""Unsupervised STDP on Fashion-MNIST (Diehl & Cook 2015, Front. Comput. Neurosci. 9:99).

Protocol: for each size N of the excitatory layer, a ``DiehlCook`` network
(seeded) is trained without labels on the first ``--train`` training images
for ``--epochs`` epochs, one image at a time by default as in the paper
(Poisson rates ∝ intensity, max 63.75 Hz, 350 ms per image, rates raised
when fewer than 5 spikes).  After every ``--eval-every`` training images
(and at the end) weights and thresholds are frozen, each neuron is labelled
by its highest mean response over the ``--label`` training images that
follow the training set, and the first ``--test`` test images are
classified by the mean response of each class's neurons; training then
continues.  The learning curve (accuracy vs images seen), the images,
epochs, dt, seed and wall times are written to
``benchmarks/results/diehl_cook.md``.

    python examples/diehl_cook.py --sizes 100 400 --train 4000 --eval-every 1000 --label 1000 --test 1000
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from creditlab.models.diehl_cook import DiehlCook, assign_labels, classify
from creditlab.tasks.datasets import fashion_mnist

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "diehl_cook.md"


def evaluate(net: DiehlCook, label: tuple, test: tuple, gen: torch.Generator) -> dict:
    """Label neurons on ``label`` and classify ``test``, with W and θ frozen."""
    neuron_labels = assign_labels(net.responses(label[0], generator=gen), label[1], 10)
    predicted = classify(net.responses(test[0], generator=gen), neuron_labels, 10)
    return dict(accuracy=float((predicted == test[1]).float().mean()),
                classes=int(neuron_labels.unique().numel()),
                theta_mean=float(net.theta.mean()), theta_max=float(net.theta.max()))


def training_blocks(n_train: int, epochs: int, every: int) -> list[tuple[int, int]]:
    """(start, stop) blocks of the training set, over all epochs; an evaluation follows each."""
    return [(start, min(start + every, n_train)) for _ in range(epochs) for start in range(0, n_train, every)]


def run_size(n_exc: int, args: argparse.Namespace, train: tuple, label: tuple, test: tuple) -> None:
    torch.manual_seed(args.seed)
    net = DiehlCook(n_in=784, n_exc=n_exc, dt=args.dt, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rows, seen, train_s = [], 0, 0.0
    for start, stop in training_blocks(args.train, args.epochs, args.eval_every):
        begin = time.perf_counter()
        net.fit(train[0][start:stop], batch_size=args.batch_size, generator=gen)
        train_s += time.perf_counter() - begin
        seen += stop - start
        begin = time.perf_counter()
        row = dict(n_exc=n_exc, seen=seen, train_s=train_s, **evaluate(net, label, test, gen))
        row["eval_s"] = time.perf_counter() - begin
        rows.append(row)
        print(f"N={n_exc} images {seen}: accuracy {row['accuracy']:.4f}, classes {row['classes']}, "
              f"θ mean {row['theta_mean']:.2f} max {row['theta_max']:.2f} mV, train {train_s:.0f} s, "
              f"eval {row['eval_s']:.0f} s", flush=True)
        write_results(n_exc, rows, args)


HEADER = """# Diehl & Cook (2015) unsupervised STDP on Fashion-MNIST

Written by `examples/diehl_cook.py`, one section per layer size (a run
rewrites the sections of the sizes it ran, after every evaluation).  One CPU
thread on a shared 2-core machine with several other jobs running, so wall
times are upper bounds.  The paper reports 82.9 % (100 neurons) and 87.0 %
(400) on MNIST after one epoch of 60 000 images (400: three epochs); the
runs here see a small fraction of that data.
"""


def size_section(n_exc: int, rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"## N = {n_exc}",
        "",
        f"    OMP_NUM_THREADS=1 python examples/diehl_cook.py --sizes {n_exc} --train {args.train} "
        f"--epochs {args.epochs} --eval-every {args.eval_every} --batch-size {args.batch_size} "
        f"--label {args.label} --test {args.test} --dt {args.dt} --seed {args.seed}",
        "",
        f"Training: the first {args.train} training images, {args.epochs} epoch(s), shuffled within blocks of "
        f"{args.eval_every}, {args.batch_size} image(s) at a time, dt = {args.dt * 1e3:g} ms, 350 ms per image "
        f"(+150 ms rest).  After each block, with W and θ frozen: labelling on training images "
        f"{args.train}–{args.train + args.label - 1} (never trained on), test on the first {args.test} test "
        f"images.  Seed {args.seed} (weights, Poisson spikes, order).",
        "",
        "| images seen | test accuracy | classes with neurons | mean θ (mV) | max θ (mV) "
        "| train wall, cumulative (s) | label + test wall (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['seen']} | {r['accuracy']:.4f} | {r['classes']} | {r['theta_mean']:.2f} | "
              f"{r['theta_max']:.2f} | {r['train_s']:.0f} | {r['eval_s']:.0f} |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(n_exc: int, rows: list[dict], args: argparse.Namespace) -> None:
    """Replace the section of ``n_exc`` in the results file, keeping the other sizes' sections."""
    sections = {}
    if RESULTS.exists():
        for part in RESULTS.read_text().split("\n## N = ")[1:]:
            sections[int(part.split("\n", 1)[0])] = "## N = " + part.rstrip("\n") + "\n"
    sections[n_exc] = size_section(n_exc, rows, args)
    text = HEADER + "".join("\n" + sections[n] for n in sorted(sections))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=RESULTS.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, RESULTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--label", type=int, default=2000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--dt", type=float, default=0.5e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.train + args.label > 60000:
        parser.error(f"--train + --label must be <= 60000, got {args.train} + {args.label}")
    torch.set_num_threads(1)
    train, test = fashion_mnist(split="train"), fashion_mnist(split="test")
    train_set = (train.images[:args.train], train.labels[:args.train])
    label_set = (train.images[args.train:args.train + args.label], train.labels[args.train:args.train + args.label])
    test_set = (test.images[:args.test], test.labels[:args.test])
    for n_exc in args.sizes:
        run_size(n_exc, args, train_set, label_set, test_set)


if __name__ == "__main__":
    main()
