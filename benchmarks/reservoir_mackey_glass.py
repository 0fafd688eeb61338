"""Echo-state Mackey-Glass benchmark: creditlab vs ReservoirPy, one process per contender.

Both fit a ridge readout for one-step prediction of the same Mackey-Glass
series (τ = 17, sampled every time unit, normalised to [-1, 1]) with the same
reservoir size, leak, spectral radius, connectivity, input scaling and ridge,
then predict a held-out segment.  Reported: one-step NRMSE on the test
segment, and wall time for fit + run (best of ``--repeats``), on the CPU.

    python benchmarks/reservoir_mackey_glass.py          # writes benchmarks/results/reservoir.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIG = dict(units=500, leak=0.3, sr=1.25, connectivity=0.1, input_scaling=1.0, ridge=1e-8,
              n_train=4000, n_test=1000, warmup=100, seed=0)


def series() -> np.ndarray:
    from creditlab.tasks.timeseries import mackey_glass
    s = mackey_glass(CONFIG["n_train"] + CONFIG["n_test"] + 1).numpy()
    return 2 * (s - s.min()) / (s.max() - s.min()) - 1


def nrmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - target) ** 2)) / np.std(target))


def run_creditlab(repeats: int) -> dict:
    import torch
    from creditlab.models.reservoir import EchoState
    torch.set_num_threads(1)
    s = torch.from_numpy(series())
    x, y = s[:-1].view(-1, 1, 1), s[1:].view(-1, 1, 1)
    n = CONFIG["n_train"]
    best, score = float("inf"), None
    for _ in range(repeats):
        res = EchoState(1, CONFIG["units"], spectral_radius=CONFIG["sr"], leak=CONFIG["leak"],
                        density=CONFIG["connectivity"], input_scaling=CONFIG["input_scaling"],
                        seed=CONFIG["seed"]).double()
        start = time.perf_counter()
        h, state = res.states(x[:n])
        res.fit_states(x[:n], h, y[:n], washout=CONFIG["warmup"], ridge=CONFIG["ridge"])
        pred, _ = res.run(x[n:], state)
        best = min(best, time.perf_counter() - start)
        score = nrmse(pred.numpy().ravel(), y[n:].numpy().ravel())
    return {"contender": "creditlab", "seconds": best, "nrmse": score}


def run_reservoirpy(repeats: int) -> dict:
    import reservoirpy
    from reservoirpy.nodes import Reservoir, Ridge
    s = series()
    x, y = s[:-1, None], s[1:, None]
    n = CONFIG["n_train"]
    best, score = float("inf"), None
    for _ in range(repeats):
        reservoir = Reservoir(units=CONFIG["units"], lr=CONFIG["leak"], sr=CONFIG["sr"],
                              rc_connectivity=CONFIG["connectivity"],
                              input_scaling=CONFIG["input_scaling"], seed=CONFIG["seed"])
        esn = reservoir >> Ridge(ridge=CONFIG["ridge"])
        start = time.perf_counter()
        esn.fit(x[:n], y[:n], warmup=CONFIG["warmup"])
        pred = esn.run(x[n:])
        best = min(best, time.perf_counter() - start)
        score = nrmse(np.asarray(pred).ravel(), y[n:].ravel())
    return {"contender": f"reservoirpy {reservoirpy.__version__}", "seconds": best, "nrmse": score}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", choices=["creditlab", "reservoirpy"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.contender:
        run = run_creditlab if args.contender == "creditlab" else run_reservoirpy
        print(json.dumps(run(args.repeats)))
        return
    rows = []
    for contender in ("creditlab", "reservoirpy"):
        out = subprocess.run([sys.executable, __file__, "--contender", contender, "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    device = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    payload = {"config": CONFIG, "device": device, "rows": rows}
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "reservoir.json").write_text(json.dumps(payload, indent=2))
    lines = ["| contender | one-step NRMSE (test) | fit + run (s) | device |", "|---|---|---|---|"]
    lines += [f"| {r['contender']} | {r['nrmse']:.2e} | {r['seconds']:.3f} | {device} |" for r in rows]
    table = "\n".join(lines)
    (out_dir / "reservoir.md").write_text(
        f"Mackey-Glass one-step prediction, {CONFIG['units']} units, leak {CONFIG['leak']}, "
        f"spectral radius {CONFIG['sr']}, ridge {CONFIG['ridge']}, {CONFIG['n_train']} train / "
        f"{CONFIG['n_test']} test steps, best of {args.repeats}.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
