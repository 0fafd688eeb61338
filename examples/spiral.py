"""Backprop on Lang & Witbrock's two spirals (1988), with a decision-region plot.

Methods, as run here: the CMU benchmark set (2 × 97 points, three turns per
arm, radius 6.5 → 0.5), a 2-``--hidden``-``--hidden``-2 tanh MLP (PyTorch's
default initialisation, seeded), softmax cross-entropy on all 194 points at
once, Adam (lr 1e-2), trained with ``cl.rules.BPTT`` (one step: plain
backprop) until training accuracy reaches 100 % or ``--steps`` run out.
The decision regions over [−7, 7]² are written as a PNG.

Run ``python examples/spiral.py`` (``--help`` for the options).
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import creditlab as cl  # noqa: E402


def train(hidden: int, steps: int, seed: int) -> tuple[cl.models.MLP, list[float]]:
    task = cl.tasks.TwoSpiral()
    x, y = task.points()
    net = cl.models.MLP([2, hidden, hidden, 2], activation="tanh", seed=seed)
    sim = cl.Simulator(net, cl.rules.BPTT())
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    accuracy: list[float] = []
    for step in range(steps):
        opt.zero_grad()
        result = sim.run(x, y, loss=task.loss)
        opt.step()
        accuracy.append(task.metrics(result.outputs, y)["accuracy"])
        if accuracy[-1] == 1.0:
            break
    return net, accuracy


def plot(net: cl.models.MLP, path: str) -> None:
    points, labels = cl.tasks.TwoSpiral().points()
    grid = torch.linspace(-7, 7, 281)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        region = net(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).argmax(-1).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.contourf(gx, gy, region, levels=[-0.5, 0.5, 1.5], colors=["#cfe3f5", "#f8d9c8"])
    for label, colour in ((0, "tab:blue"), (1, "tab:red")):
        arm = points[0][labels == label]
        ax.scatter(arm[:, 0], arm[:, 1], s=10, c=colour)
    ax.set_aspect("equal")
    ax.set_title("two spirals: backprop decision regions")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "spiral.png"))
    args = parser.parse_args()
    net, accuracy = train(args.hidden, args.steps, args.seed)
    print(f"training accuracy {accuracy[-1]:.3f} after {len(accuracy)} steps (seed {args.seed})")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    plot(net, args.out)
    print(f"decision regions written to {args.out}")


if __name__ == "__main__":
    main()
