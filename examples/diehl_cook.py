"""Unsupervised STDP on Fashion-MNIST (Diehl & Cook 2015, Front. Comput. Neurosci. 9:99).

Protocol: for each size N of the excitatory layer, a ``DiehlCook`` network
(seeded) is trained without labels on the first ``--train`` training images
for ``--epochs`` epochs (Poisson rates ∝ intensity, max 63.75 Hz, 350 ms per
image, rates raised when fewer than 5 spikes); weights and thresholds are
then frozen, each neuron is labelled by its highest mean response over the
next ``--label`` training images, and the first ``--test`` test images are
classified by the mean response of each class's neurons.  Results (images,
epochs, dt, seed, wall time, accuracy) are written to
``benchmarks/results/diehl_cook.md``.

    python examples/diehl_cook.py --sizes 100 400 --train 3000 --label 2000 --test 2000
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


def run_size(n_exc: int, args: argparse.Namespace, train: tuple, test: tuple) -> dict:
    torch.manual_seed(args.seed)
    net = DiehlCook(n_in=784, n_exc=n_exc, dt=args.dt, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x_train, y_train = train
    start = time.perf_counter()
    net.fit(x_train[:args.train], epochs=args.epochs, batch_size=args.batch_size, generator=gen)
    train_s = time.perf_counter() - start
    label_x = x_train[args.train:args.train + args.label]
    label_y = y_train[args.train:args.train + args.label]
    start = time.perf_counter()
    neuron_labels = assign_labels(net.responses(label_x, generator=gen), label_y, 10)
    predicted = classify(net.responses(test[0][:args.test], generator=gen), neuron_labels, 10)
    eval_s = time.perf_counter() - start
    accuracy = float((predicted == test[1][:args.test]).float().mean())
    row = dict(n_exc=n_exc, accuracy=accuracy, train_s=train_s, eval_s=eval_s,
               classes_covered=int(neuron_labels.unique().numel()), theta_mean=float(net.theta.mean()))
    print(f"N={n_exc}: accuracy {accuracy:.4f}, train {train_s:.0f} s, label+test {eval_s:.0f} s", flush=True)
    return row


def write_results(rows: list[dict], args: argparse.Namespace) -> None:
    lines = [
        "# Diehl & Cook (2015) unsupervised STDP on Fashion-MNIST",
        "",
        "Written by `examples/diehl_cook.py`. Command:",
        "",
        f"    OMP_NUM_THREADS=1 python examples/diehl_cook.py --sizes {' '.join(map(str, args.sizes))} "
        f"--train {args.train} --epochs {args.epochs} --batch-size {args.batch_size} --label {args.label} "
        f"--test {args.test} --dt {args.dt} --seed {args.seed}",
        "",
        f"Training: the first {args.train} training images, {args.epochs} epoch(s), mini-batches of "
        f"{args.batch_size} images (batch-mean ΔW, summed Δθ; see the model docstring), dt = {args.dt * 1e3:g} ms, "
        f"350 ms per image.  Labelling: the next {args.label} training images (frozen W, θ).  "
        f"Test: the first {args.test} test images.  Seed {args.seed} (weights, Poisson spikes, order).  "
        "One CPU thread on a shared 2-core machine.",
        "",
        "| N excitatory | test accuracy | classes with neurons | mean θ (mV) | train wall (s) | label + test wall (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['n_exc']} | {r['accuracy']:.4f} | {r['classes_covered']} | {r['theta_mean']:.2f} | "
              f"{r['train_s']:.0f} | {r['eval_s']:.0f} |" for r in rows]
    lines += ["", "The paper reports 82.9 % (100 neurons) and 87.0 % (400) on MNIST after one epoch of "
              "60 000 images (400: three epochs); runs here see a small fraction of that data.", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=RESULTS.parent, delete=False, suffix=".tmp") as handle:
        handle.write("\n".join(lines))
    os.replace(handle.name, RESULTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--label", type=int, default=2000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--dt", type=float, default=0.5e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = fashion_mnist(split="train"), fashion_mnist(split="test")
    rows = [run_size(n, args, (train.images, train.labels), (test.images, test.labels)) for n in args.sizes]
    write_results(rows, args)


if __name__ == "__main__":
    main()
