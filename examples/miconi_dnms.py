"""Miconi (2017, eLife 6:e20899), Figure 1: delayed non-match-to-sample learned from reward alone.

Network (as in Miconi's published code, github.com/ThomasMiconi/BiologicallyPlausibleLearningRNN,
dnms/net.cpp): N = 200 tanh rate units, τ = 30 ms, dt = 1 ms, recurrent gain g = 1.5, fixed input
weights (none onto the output unit); the answer is the rate of one designated unit (unit 0), so the
readout is frozen at w_out = e_0 and only the recurrent weights and biases learn.  Each trial starts
from h ~ U(−0.1, 0.1).

Learning: reward-modulated node perturbation with Miconi's cubic eligibility,
E_ij += (r_j^t (h_i^{t+1} − h̄_i^t))³; perturbations hit each unit at 3 Hz (p = 0.003 per 1 ms step)
with amplitude U(−16, 16) added to the unit's drive, so that, as in Miconi's code, they move h by at
most 16·dt/τ ≈ 0.53 in one step.  After each trial, with e its error and ē_k the running mean error
of its stimulus pair k (β = 0.75):

    ΔW = −η ē_k (e − ē_k) E,   each element clipped to ±3·10⁻⁴,   η = 0.1
    ē_k ← β ē_k + (1 − β) e

The factor ē_k is Miconi's (``baseline_scaling=True``): it anneals the step as the error falls.  The
weights change after every trial (``--batch 1``, Miconi's schedule); with ``--batch B`` the weights
are frozen within a batch and SGD at lr η·B applies the sum of the batch's clipped changes.  Miconi
clamps three units to ±1 as biases; here each unit has its own learned bias b instead.

Criterion (the paper's Figure 1B): 95 % of 100 successive trials correct, a trial being correct when
its error (mean |output − target| over the 200 ms response window) is below 1.  The run also
reports the stricter error < 0.5 (the criterion quoted in the code's README).

    python examples/miconi_dnms.py --trials 3000 --seed 0
"""
from __future__ import annotations

import argparse
import time

import torch

import creditlab as cl
from creditlab.models import RateState

ETA = 0.1
MAX_DW = 3e-4


def build(seed: int, n_rec: int = 200) -> cl.models.RateRNN:
    """Miconi's network; only w_rec and b stay trainable."""
    net = cl.models.RateRNN(n_in=2, n_rec=n_rec, n_out=1, tau=30e-3, dt=1e-3, g=1.5, seed=seed)
    with torch.no_grad():
        net.w_out.zero_()
        net.w_out[0, 0] = 1.0
        net.w_in[0].zero_()  # the output unit sees the stimuli only through the network
    for p in (net.w_in, net.w_out, net.b_out):
        p.requires_grad_(False)
    return net


def initial_state(net: cl.models.RateRNN, batch: int, gen: torch.Generator) -> RateState:
    h = (torch.rand(batch, net.n_rec, generator=gen) * 2 - 1) * 0.1
    return RateState(h, net.phi(h))


def correct_fraction(errors: list[float], bound: float, window: int = 100) -> float:
    """Fraction of the last ``window`` trials whose error is below ``bound``."""
    recent = errors[-window:]
    return sum(e < bound for e in recent) / len(recent)


def train(trials: int, batch: int, seed: int, log_every: int = 200,
          stop_at_criterion: bool = False) -> dict[str, object]:
    """Train for at most ``trials`` trials; ``stop_at_criterion`` ends the run once error < 1 is met."""
    torch.manual_seed(seed)
    task = cl.tasks.DelayedNonMatch(amplitude=0.98, seed=seed)
    net = build(seed)
    rule = cl.rules.NodePerturbation(sigma=16.0, mode="reward", baseline_decay=0.75, seed=seed,
                                     eligibility="cubic", p_perturb=0.003, noise="uniform",
                                     trial_type=task.trial_type, trial_clip=MAX_DW / ETA,
                                     baseline_scaling=True)
    sim = cl.Simulator(net, rule)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=ETA * batch)
    gen = torch.Generator().manual_seed(seed + 1)
    errors: list[float] = []
    reached: dict[str, int | None] = {"error<1": None, "error<0.5": None}
    start = time.time()
    while len(errors) < trials:
        x, y = task.sample(batch)
        result = sim.run(x, y, loss=task.loss, state=initial_state(net, batch, gen))
        opt.step()
        opt.zero_grad()
        for err in task.loss.trial_errors(result.outputs, y).tolist():
            errors.append(err)
            for key, bound in (("error<1", 1.0), ("error<0.5", 0.5)):
                if reached[key] is None and len(errors) >= 100 and \
                        correct_fraction(errors, bound) >= 0.95:
                    reached[key] = len(errors)
        if len(errors) % log_every < batch:
            recent = errors[-100:]
            print(f"trial {len(errors):6d}  mean error (last 100) {sum(recent) / len(recent):.3f}  "
                  f"correct<1 {correct_fraction(errors, 1.0):.2f}  "
                  f"correct<0.5 {correct_fraction(errors, 0.5):.2f}  "
                  f"[{time.time() - start:.0f} s]", flush=True)
        if stop_at_criterion and reached["error<1"] is not None:
            break
    return {"errors": errors, "reached": reached, "seconds": time.time() - start, "net": net}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = train(args.trials, args.batch, args.seed)
    print(f"criterion (95 % of 100 trials with error < 1) reached after {out['reached']['error<1']} trials; "
          f"with error < 0.5 after {out['reached']['error<0.5']} trials; wall time {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
