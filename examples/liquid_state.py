"""Liquid-state machine classifying jittered spike patterns (after Maass, Natschläger & Markram 2002).

Protocol: K template patterns of 4 Poisson spike trains (200 ms, 20 Hz) are
frozen by the task's seed; each trial is a copy of one template with every
spike deleted with probability 0.1, moved by Gaussian jitter of SD 4 ms, and
with 2 Hz of extra spikes per channel.  The trial drives a 135-neuron LIF
liquid on a 15 × 3 × 3 grid (80 % excitatory, connection probability
C·exp(−(D/λ)²), λ = 2); a linear readout of the liquid's spikes, low-pass
filtered with τ = 30 ms, is fit by ridge regression to one-hot targets over
the last 10 ms of the training trials, and a held-out trial is classified by
the argmax of the readout averaged over those 10 ms.  For comparison, the
same ridge readout is fit on the input spikes filtered the same way (no
liquid).  Writes a spike raster of one test trial and the PCA of the
liquid's filtered states over test trials.

    python examples/liquid_state.py --templates 4 --train 400 --out-dir runs/liquid
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import creditlab as cl


def filtered(spikes: torch.Tensor, tau: float, dt: float) -> torch.Tensor:
    """Exponential filter r^{t+1} = exp(−dt/τ) r^t + s^{t+1} of ``spikes [T, B, n]``."""
    kappa, trace = math.exp(-dt / tau), torch.zeros_like(spikes[0])
    out = torch.empty_like(spikes)
    for t, s in enumerate(spikes.unbind(0)):
        trace = kappa * trace + s
        out[t] = trace
    return out


def input_readout_accuracy(task: cl.tasks.SpikePatterns, x_train: torch.Tensor, y_train: torch.Tensor,
                           x_test: torch.Tensor, y_test: torch.Tensor, tau: float, ridge: float) -> float:
    """Accuracy of the same windowed ridge readout on the filtered input spikes alone."""
    window = task.loss.window

    def rows(x: torch.Tensor) -> torch.Tensor:
        r = filtered(x, tau, task.dt)[-window:].double()
        return torch.cat([torch.ones(*r.shape[:-1], 1, dtype=torch.float64), r], -1)

    design = rows(x_train).reshape(-1, task.n_in + 1)
    target = torch.nn.functional.one_hot(y_train, task.n_out).double().repeat(window, 1)
    gram = design.t() @ design + ridge * torch.eye(design.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, design.t() @ target)
    predicted = (rows(x_test) @ weights).mean(0).argmax(-1)
    return float((predicted == y_test).float().mean())


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=4)
    parser.add_argument("--train", type=int, default=400, help="training trials")
    parser.add_argument("--test", type=int, default=200, help="held-out trials")
    parser.add_argument("--jitter", type=float, default=4e-3, help="SD of spike-time jitter (s)")
    parser.add_argument("--ridge", type=float, default=1e-2)
    parser.add_argument("--task-seed", type=int, default=0)
    parser.add_argument("--liquid-seed", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    args = parser.parse_args(argv)

    task = cl.tasks.SpikePatterns(n_templates=args.templates, jitter=args.jitter, seed=args.task_seed)
    x_train, y_train = task.sample(args.train)
    x_test, y_test = task.sample(args.test)
    liquid = cl.models.LiquidState(task.n_in, n_out=task.n_out, dt=task.dt, seed=args.liquid_seed)
    window = task.loss.window

    liquid.fit(x_train, y_train, window=window, ridge=args.ridge)
    spikes, states, _ = liquid.run_liquid(x_test)
    outputs = liquid.readout(states)
    accuracy = task.metrics(outputs, y_test)["accuracy"]
    train_accuracy = float((liquid.classify(x_train, window=window) == y_train).float().mean())
    baseline = input_readout_accuracy(task, x_train, y_train, x_test, y_test, liquid.tau_readout, args.ridge)
    rate = float(spikes.mean()) / task.dt
    synapses = int((liquid.w_rec != 0).sum())

    print(f"spike-patterns: K={args.templates} templates, jitter={args.jitter * 1e3:g} ms, "
          f"{args.train} training / {args.test} test trials, task seed {args.task_seed}, "
          f"liquid seed {args.liquid_seed}")
    print(f"liquid: {liquid.n_units} neurons ({liquid.n_exc} E / {liquid.n_inh} I), {synapses} synapses, "
          f"mean rate {rate:.1f} Hz")
    print(f"liquid readout accuracy: train {train_accuracy:.3f}, test {accuracy:.3f} "
          f"(chance {1 / args.templates:.3f})")
    print(f"filtered-input readout accuracy (no liquid): test {baseline:.3f}")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    cl.viz.raster(spikes[:, 0], task.dt, populations=liquid.populations(),
                  title=f"liquid spikes, test trial of template {int(y_test[0])}",
                  path=args.out_dir / "liquid_raster.png")
    shown = min(args.test, 20)
    cl.viz.reservoir_pca(states[:, :shown], labels=y_test[:shown], path=args.out_dir / "liquid_pca.png")
    print(f"wrote {args.out_dir / 'liquid_raster.png'} and {args.out_dir / 'liquid_pca.png'}")
    return {"accuracy": accuracy, "train_accuracy": train_accuracy, "input_only_accuracy": baseline,
            "rate": rate}


if __name__ == "__main__":
    main()
