"""e-prop on cue accumulation and pattern generation (Bellec et al. 2020, Figs. 2–3).

Methods, as run here:

- Evidence accumulation: 50 LIF + 50 ALIF neurons (τ_m = 20 ms, τ_a = 2000 ms,
  β = 1.8, v_th = 0.6, t_ref = 5 ms, triangle pseudo-derivative with dampening
  0.3), leaky readout τ_out = 20 ms, 40 Poisson input channels, cross-entropy
  over the recall window.  e-prop with random feedback (B ~ N(0, 1/n_rec),
  seeded), firing-rate regularisation towards 10 Hz (``rate_reg`` 5e-6, which
  keeps its gradient at about a quarter of the task's), Adam (lr 5e-3),
  batches of 32.  The trial is shortened from Bellec's 2250 ms so that the run
  fits a small shared CPU: by default (``--trial tiny``, 300 steps of 1 ms)
  7 cues of 20 ms separated by 10 ms, a 50 ms delay and a 40 ms recall;
  ``--trial short`` doubles every duration (600 steps) and ``--trial full`` is
  the paper's trial.  Accuracy is measured on fresh batches from the task's
  generator (every batch is new); the final accuracy on 512 further trials.
- Pattern generation: 100 LIF neurons, a frozen 100-channel Poisson input and
  a sum of 1, 2, 3, 5 Hz sinusoids as target, shortened to 300 ms
  (``--pattern-duration``); e-prop (symmetric feedback) and BPTT (surrogate
  gradient) from the same initial weights, Adam (lr 3e-3), 200 iterations;
  the final mean squared errors (mean of the last 10 iterations) are compared.

Run ``python examples/eprop_evidence.py`` (``--help`` for the options); the
results are printed and written as JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

import creditlab as cl
from creditlab.tasks.temporal import EvidenceAccumulation, PatternGeneration


#: trial variants: Bellec's 2250 ms trial and two shortened ones (7 cues each)
TRIALS = {
    "full": {},
    "short": {"cue_duration": 0.04, "cue_pause": 0.02, "delay": 0.1, "recall_duration": 0.08},  # 600 steps
    "tiny": {"cue_duration": 0.02, "cue_pause": 0.01, "delay": 0.05, "recall_duration": 0.04},  # 300 steps
}


def evidence_task(trial: str, seed: int) -> EvidenceAccumulation:
    return EvidenceAccumulation(n_cues=7, seed=seed, **TRIALS[trial])


def evidence_network(task: EvidenceAccumulation, seed: int) -> cl.models.LIF:
    return cl.models.LIF(n_in=task.n_in, n_rec=100, n_out=2, adaptive_fraction=0.5, dt=task.dt,
                         tau_m=20e-3, tau_a=2.0, beta=1.8, v_th=0.6, t_ref=5e-3, tau_out=20e-3,
                         surrogate="triangle", seed=seed)


def train_evidence(steps: int, batch: int, trial: str, seed: int, rate_reg: float,
                   log_every: int = 10) -> dict:
    """Train with random e-prop; return the accuracy curve and timing."""
    torch.manual_seed(seed)
    task = evidence_task(trial, seed)
    net = evidence_network(task, seed)
    rule = cl.rules.EProp("random", rate_target=10.0, rate_reg=rate_reg, seed=seed)
    sim = cl.Simulator(net, rule, monitors=("spikes",))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    curve, start = [], time.time()
    window: list[float] = []
    for step in range(1, steps + 1):
        x, y = task.sample(batch)
        result = sim.run(x, target=y, loss=task.loss)
        opt.step()
        opt.zero_grad()
        accuracy = float((task.loss.predictions(result.outputs) == y).float().mean())
        window.append(accuracy)
        if step % log_every == 0:
            rate = float(result.record.spikes.float().mean()) / task.dt
            curve.append({"step": step, "accuracy": sum(window) / len(window), "loss": float(result.loss),
                          "rate_hz": rate, "seconds": time.time() - start})
            print(f"evidence step {step:4d}  accuracy {curve[-1]['accuracy']:.3f}  "
                  f"loss {float(result.loss):.3f}  rate {rate:5.1f} Hz  {time.time() - start:6.0f} s",
                  flush=True)
            window = []
    final = evaluate_evidence(net, task, n_batches=8, batch=64)
    return {"task": {"n_steps": task.n_steps, "n_cues": task.n_cues, "trial": trial},
            "steps": steps, "batch": batch, "seed": seed, "rate_reg": rate_reg,
            "curve": curve, "final_accuracy": final, "wall_seconds": time.time() - start}


@torch.no_grad()
def evaluate_evidence(net: cl.models.LIF, task: EvidenceAccumulation, n_batches: int, batch: int) -> float:
    correct = 0.0
    for _ in range(n_batches):
        x, y = task.sample(batch)
        outputs = cl.Simulator(net).run(x).outputs
        correct += float((task.loss.predictions(outputs) == y).float().mean())
    return correct / n_batches


def train_pattern(rule_name: str, steps: int, duration: float, seed: int) -> dict:
    """Train pattern generation with ``rule_name`` ("eprop" or "bptt"); return the MSE curve."""
    task = PatternGeneration(n_in=100, duration=duration, seed=seed)
    net = cl.models.LIF(n_in=100, n_rec=100, n_out=1, dt=task.dt, tau_m=20e-3, v_th=0.6,
                        tau_out=20e-3, seed=seed)
    rule = cl.rules.EProp("symmetric") if rule_name == "eprop" else cl.rules.SurrogateGradient()
    sim = cl.Simulator(net, rule)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = task.sample(1)
    losses, start = [], time.time()
    for _ in range(steps):
        result = sim.run(x, target=y, loss=task.loss)
        opt.step()
        opt.zero_grad()
        losses.append(float(result.loss))
    final = sum(losses[-10:]) / len(losses[-10:])
    print(f"pattern {rule_name:5s}: initial MSE {losses[0]:.4f}  final MSE {final:.4f}  "
          f"({time.time() - start:.0f} s)", flush=True)
    return {"rule": rule_name, "steps": steps, "duration": duration, "seed": seed,
            "initial_mse": losses[0], "final_mse": final, "curve": losses[::10],
            "wall_seconds": time.time() - start}


def write_json(path: str, data: dict) -> None:
    """Write atomically: a temporary file renamed over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
        json.dump(data, handle, indent=1)
    os.replace(handle.name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="training iterations (evidence)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--trial", choices=sorted(TRIALS), default="tiny",
                        help="full: Bellec's 2250 ms trials; short: 600 ms; tiny: 300 ms")
    parser.add_argument("--rate-reg", type=float, default=5e-6)
    parser.add_argument("--pattern-steps", type=int, default=200)
    parser.add_argument("--pattern-duration", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", choices=("evidence", "pattern"), default=None)
    parser.add_argument("--out", default="runs/eprop_evidence.json")
    args = parser.parse_args()
    results: dict = {}
    if args.skip != "evidence":
        results["evidence"] = train_evidence(args.steps, args.batch, args.trial, args.seed, args.rate_reg)
        write_json(args.out, results)
    if args.skip != "pattern":
        results["pattern"] = [train_pattern(name, args.pattern_steps, args.pattern_duration, args.seed)
                              for name in ("eprop", "bptt")]
        ratio = results["pattern"][0]["final_mse"] / results["pattern"][1]["final_mse"]
        results["pattern_ratio_eprop_over_bptt"] = ratio
        print(f"pattern: e-prop final MSE / BPTT final MSE = {ratio:.2f}")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
