"""Bottleneck autoencoder 784-200-2-200-784 on Fashion-MNIST: BP, Adam, FA and learned feedback.

The comparison of Lansdell, Prakash & Kording (2019, "Learning to solve the
credit assignment problem", the auto-encoding figure: MNIST, best test loss
learned feedback 515 < Adam 538 < BP 610 < FA 759), on Fashion-MNIST or, with
``--dataset mnist-10k``, on the 10 000-digit MNIST subset (their data set, but
8 000 training images instead of 55 000).  Their network (``AENPModel5`` in
their code):

    code = W_2 tanh(W_1 x + b_1) + b_2   (linear),   x̂ = relu(W_4 tanh(W_3 code + b_3) + b_4)
    loss per image  ℓ(x) = ½ Σ_pixels (x̂ − x)²,   trained on its batch mean.

creditlab's MLP ends in a linear layer, so the output ReLU is part of the loss
(``ReLUHalfSumSquares``: the error it hands the rules is (x̂ − x) ⊙ 1[y > 0]).
Weights and biases start ~ N(0, 2 / fan_in), as in their backprop, FA and Adam models.

Methods (each a ``cl.rules`` rule writing ``p.grad`` plus a ``torch.optim`` step):

- ``adam``: backprop, Adam;  ``bp``: backprop, plain SGD;  ``fa``: feedback
  alignment, SGD (``bp-lr5e-5``, ``fa-lr5e-5``: at the learning rate of their
  earlier configuration file; ``bp-lr1.25e-4``, ``fa-lr1.25e-4``: one more
  rate, 2.5× that, the same for both — added because on Fashion-MNIST
  backprop at both of their rates trailed FA, its searched rate killing the
  output ReLUs);  ``learned-feedback``: ``cl.rules.LearnedFeedback`` (layerwise,
  node-perturbation-trained B), SGD on the forward weights, at the 200-unit width
  of the other methods;  ``learned-feedback-50``: the same at hidden width 50,
  784-50-2-50-784 — the network their published learned-feedback curve was
  trained on (their ``AENPModel5`` sets the hidden width to 50).

Learning rates are the authors' random-search values (their ``nodepert_ae5_*``
configurations: batch 32, SGD on the loss summed over the batch), converted to
a batch-mean loss by × 32: BP 3.73e-4 → 1.19e-2, FA 3.47e-6 → 1.11e-4 (and 5e-5 → 1.6e-3,
1.25e-4 → 4e-3 for both),
learned feedback 1e-4 → 3.2e-3 with feedback rate 8e-6 → 2.56e-4 and
c_h = 0.018942 (their ``var_xi``, which their code uses as the noise's
standard deviation); Adam 1.41e-4 is scale-free.  Their loss sums over the 32
images of a batch: an all-zero reconstruction already costs ½Σx² ≈ 50 per
MNIST image, so 515–759 are per 32-image batch, ≈ 16–24 per image; both units
are reported.

Departures, stated in the output: Fashion-MNIST or a subset of MNIST; far
fewer updates than their 10⁶ (``--epochs``); one seed, not their 3 runs.

    OMP_NUM_THREADS=1 python benchmarks/autoencoder_fmnist.py --epochs 20

``--merge`` keeps the rows of an earlier run with the same data set, epochs,
batch size and seed (read from its JSON) and adds or replaces the rows run
now, so one row can be rerun, or the rows split over several processes
(each with its own ``--out``, merged at the end by a run with ``--methods``
and no names).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import creditlab as cl  # noqa: E402
from creditlab.losses import TimeLocalLoss  # noqa: E402
from creditlab.tasks import datasets  # noqa: E402

from _common import write_atomic

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
THEIR_BATCH = 32
#: Lansdell et al.'s best MNIST test losses (per 32-image batch), for the ordering check
PUBLISHED = {"learned-feedback": 515.0, "adam": 538.0, "bp": 610.0, "fa": 759.0}
NOISE_STD = 0.018942
#: hidden width of every row but learned-feedback-50 (784-200-2-200-784); the ordering check compares methods at it
ORDERED_WIDTH = 200
LEARNED_FEEDBACK = dict(rule="learned-feedback", optimizer="sgd", lr=1e-4 * THEIR_BATCH,
                        options=dict(noise_std=NOISE_STD, feedback_lr=8e-6 * THEIR_BATCH))
#: ``published``: the method of PUBLISHED a row stands for.  Their configuration files give backprop and FA two
#: learning rates each (the searched ``nodepert_ae5_*auto`` values and 5e-5), and both get 1.25e-4 here; the
#: check takes each method's best row on the 784-200-2-200-784 network, so every method it orders trained the
#: same network.  Their learned-feedback figure is from the 50-unit network: that row shows their number beside
#: ours but is not ordered.
METHODS = {
    "adam": dict(rule="backprop", optimizer="adam", lr=1.41e-4, published="adam"),
    "bp": dict(rule="backprop", optimizer="sgd", lr=3.73e-4 * THEIR_BATCH, published="bp"),
    "bp-lr5e-5": dict(rule="backprop", optimizer="sgd", lr=5e-5 * THEIR_BATCH, published="bp"),
    "bp-lr1.25e-4": dict(rule="backprop", optimizer="sgd", lr=1.25e-4 * THEIR_BATCH, published="bp"),
    "fa": dict(rule="fa", optimizer="sgd", lr=3.47e-6 * THEIR_BATCH, published="fa"),
    "fa-lr5e-5": dict(rule="fa", optimizer="sgd", lr=5e-5 * THEIR_BATCH, published="fa"),
    "fa-lr1.25e-4": dict(rule="fa", optimizer="sgd", lr=1.25e-4 * THEIR_BATCH, published="fa"),
    "learned-feedback": dict(LEARNED_FEEDBACK, published="learned-feedback"),
    "learned-feedback-50": dict(LEARNED_FEEDBACK, hidden=50, published="learned-feedback"),
}
#: per dataset: the name in tables, the result files' stem, the class labels of the latent plots
DATASETS = {
    "fashion-mnist": ("Fashion-MNIST", "autoencoder_fmnist",
                      ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")),
    "mnist-10k": ("MNIST-10k subset", "autoencoder_mnist10k", tuple(str(d) for d in range(10))),
}
MNIST_10K = Path("/work/shared/data/mnist-10k")


class ReLUHalfSumSquares(TimeLocalLoss):
    """ℓ = mean over batch of ½ Σ_pixels (relu(y) − target)²: Lansdell et al.'s reconstruction loss with
    their output ReLU applied to the MLP's linear output y."""

    name = "relu-half-sum-squares"

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((torch.relu(outputs) - target) ** 2).sum(-1).mean()

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        residual = torch.relu(y_t) - target[t]
        return torch.ops.aten.threshold_backward(residual, y_t, 0) / (n_steps * y_t.shape[0])


def he_normal(net: cl.models.MLP, seed: int) -> cl.models.MLP:
    """Weights and biases ~ N(0, 2 / fan_in), their backprop/FA/Adam models' initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            std = (2.0 / layer.in_features) ** 0.5
            for p in (layer.weight, layer.bias):
                p.copy_(torch.randn(p.shape, generator=generator) * std)
    return net


def make_rule(method: dict, seed: int) -> cl.rules.Rule:
    if method["rule"] == "backprop":
        return cl.rules.Backprop()
    return cl.rules.RULES[method["rule"]](seed=seed, **method.get("options", {}))


def test_loss(net: cl.models.MLP, x: torch.Tensor) -> float:
    """Mean over test images of ½ Σ (x̂ − x)²."""
    with torch.no_grad():
        return float(ReLUHalfSumSquares()(net(x), x))


def codes(net: cl.models.MLP, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.step(x, net.init_state(len(x)))[2].activities[2]


def train(name: str, x_train: torch.Tensor, x_test: torch.Tensor, epochs: int, batch_size: int,
          seed: int) -> dict:
    """Test loss after every epoch (per image), seconds per epoch, and the trained net."""
    method = METHODS[name]
    net = he_normal(cl.models.autoencoder(hidden=method.get("hidden", ORDERED_WIDTH), activation="tanh",
                                          code_activation="linear"), seed)
    sim = cl.Simulator(net, make_rule(method, seed))
    opt = (torch.optim.Adam if method["optimizer"] == "adam" else torch.optim.SGD)(net.parameters(),
                                                                                  lr=method["lr"])
    loss = ReLUHalfSumSquares()
    generator = torch.Generator().manual_seed(seed)
    curve, seconds = [test_loss(net, x_test)], 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(x_train), batch_size):
            xb = x_train[order[i:i + batch_size]]
            sim.run(xb, xb, loss)
            opt.step()
            opt.zero_grad()
        seconds += time.perf_counter() - start
        curve.append(test_loss(net, x_test))
        print(f"{name} epoch {epoch + 1}: test loss {curve[-1]:.2f} per image", flush=True)
    return dict(net=net, curve=curve, seconds_per_epoch=seconds / max(epochs, 1))


def plot_latent(name: str, net: cl.models.MLP, x: torch.Tensor, y: torch.Tensor, path: Path, dataset: str) -> None:
    z = codes(net, x)
    fig, ax = plt.subplots(figsize=(5, 5))
    points = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=2, vmin=-0.5, vmax=9.5)
    label, _, classes = DATASETS[dataset]
    ax.set(title=f"{name}\n2-D code of {len(x)} {label} test images", xlabel="code 1", ylabel="code 2")
    bar = fig.colorbar(points, ax=ax, ticks=range(10))
    bar.ax.set_yticklabels(classes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ordering(losses: dict[str, float]) -> list[str]:
    return sorted(losses, key=losses.get)


def methods_run(results: dict[str, dict]) -> str:
    """The rows of the table when they are not every method of the script (a run of chosen rows)."""
    if set(results) == set(METHODS):
        return ""
    return " with rows " + ", ".join(f"`{n}`" for n in results)


def load_rows(path: Path, args: argparse.Namespace) -> dict[str, dict]:
    """Curves and times of an earlier run's rows, checked to be the same data set, epochs, batch and seed."""
    if not path.exists():
        raise SystemExit(f"--merge: {path} does not exist; run without --merge first")
    earlier = json.loads(path.read_text())
    for key in ("dataset", "epochs", "batch_size", "seed"):
        if earlier[key] != getattr(args, key):
            raise SystemExit(f"--merge: {path} has {key}={earlier[key]!r}, this run {getattr(args, key)!r}")
    unknown = sorted(set(earlier["methods"]) - set(METHODS))
    if unknown:
        raise SystemExit(f"--merge: {path} has rows {unknown} that are not methods of this script")
    return {n: dict(curve=m["test_loss_per_image"], seconds_per_epoch=m["seconds_per_epoch"])
            for n, m in earlier["methods"].items()}


def write_results(results: dict[str, dict], args: argparse.Namespace, n_train: int, stem: str) -> None:
    ordered = {n: results[n] for n in METHODS if n in results}
    write_atomic(args.out / f"{stem}.md", report(ordered, args, n_train))
    write_atomic(args.out / f"{stem}.json", json.dumps(
        dict(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
             published_mnist=PUBLISHED,
             methods={n: dict(METHODS[n], test_loss_per_image=r["curve"], seconds_per_epoch=r["seconds_per_epoch"])
                      for n, r in ordered.items()}), indent=1))


def report(results: dict[str, dict], args: argparse.Namespace, n_train: int) -> str:
    best = {n: min(r["curve"][1:]) for n, r in results.items()}
    compared: dict[str, float] = {}
    for name, loss in best.items():
        method = METHODS[name].get("published")
        if method is not None and METHODS[name].get("hidden", ORDERED_WIDTH) == ORDERED_WIDTH:
            compared[method] = min(loss, compared.get(method, loss))
    ours, theirs = ordering(compared), [n for n in ordering(PUBLISHED) if n in compared]
    label, stem, _ = DATASETS[args.dataset]
    lines = [f"# Bottleneck autoencoder 784-200-2-200-784 on {label}", "",
             f"Generated by `python benchmarks/autoencoder_fmnist.py --dataset {args.dataset} --epochs {args.epochs} "
             f"--seed {args.seed}`{methods_run(results)} ({n_train} training images, batch {args.batch_size}, "
             f"{args.epochs} epochs = "
             f"{args.epochs * -(-n_train // args.batch_size)} updates; "
             "Lansdell et al. ran up to 10⁶).  tanh hidden layers, linear code, ReLU output, pixels in [0, 1], "
             "weights and biases ~ N(0, 2/fan_in).  "
             "Loss ½ Σ_pixels (x̂ − x)² per image; × 32 gives their units (loss summed over a 32-image batch).  "
             "Learning rates: the authors' values, converted to a batch-mean loss, and one more shared by BP and FA "
             "(see the script).", "",
             "| method | net | optimizer, lr | best test loss / image | × 32 (their units) | final test loss / image "
             "| their best (MNIST, per 32) | s / epoch |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        m = METHODS[name]
        width = m.get("hidden", ORDERED_WIDTH)
        published = f"{PUBLISHED[m['published']]:.0f}" if "published" in m else "–"
        lines.append(f"| {name} | 784-{width}-2-{width}-784 | {m['optimizer']} {m['lr']:.3g} | {best[name]:.2f} "
                     f"| {best[name] * THEIR_BATCH:.0f} | {r['curve'][-1]:.2f} | {published} "
                     f"| {r['seconds_per_epoch']:.1f} |")
    match = ours == theirs
    width = ORDERED_WIDTH
    lines += ["", f"Ordering of the methods they report, on 784-{width}-2-{width}-784, each at its best row "
              f"(best test loss, lowest first): "
              f"creditlab {' < '.join(ours)}; Lansdell et al. {' < '.join(theirs)} — "
              f"{'matches' if match else 'does not match'}.  All rows: {' < '.join(ordering(best))}.", "",
              "Test loss per image after each epoch (epoch 0 = initial):", ""]
    lines += [f"- {n}: " + ", ".join(f"{v:.1f}" for v in r["curve"]) for n, r in results.items()]
    lines += ["", "Latent codes: " + ", ".join(f"`{stem}_{n}.png`" for n in results), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="fashion-mnist",
                        help="mnist-10k: the 10 000-digit MNIST subset (8 000 train / 2 000 test)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=THEIR_BATCH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="*", choices=list(METHODS), default=list(METHODS),
                        help="rows to train (default all; none with --merge: only merge and report)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="JSON results of earlier runs (same data set, epochs, batch size, seed) to keep rows from")
    args = parser.parse_args(argv)
    if not args.methods and not args.merge:
        parser.error("--methods with no names only merges: give --merge with the JSON results to merge")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.dataset == "fashion-mnist":
        train_set, test_set = datasets.fashion_mnist(split="train"), datasets.fashion_mnist(split="test")
    else:
        train_set, test_set = datasets.mnist(MNIST_10K, split="train"), datasets.mnist(MNIST_10K, split="test")
    stem = DATASETS[args.dataset][1]
    results: dict[str, dict] = {}
    for path in args.merge:
        results.update(load_rows(path, args))
    for name in args.methods:
        results[name] = train(name, train_set.images, test_set.images, args.epochs, args.batch_size, args.seed)
        plot_latent(name, results[name]["net"], test_set.images[:5000], test_set.labels[:5000],
                    args.out / f"{stem}_{name}.png", args.dataset)
        write_results(results, args, len(train_set.images), stem)
    if not args.methods:
        write_results(results, args, len(train_set.images), stem)
    print((args.out / f"{stem}.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
