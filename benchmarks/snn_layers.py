"""Spiking layers trained by surrogate gradient: creditlab against snnTorch, Norse and SpikingJelly.

One training step (forward + backward of the summed spikes) of

- ``feedforward``: Linear(H→H, no bias) → LIF over T steps;
- ``recurrent``: the same with all-to-all recurrent weights W_rec (H×H),

on input spikes x ~ Bernoulli(0.1) of shape [T, B, H], one process per
contender, best of ``--repeats`` after one warm-up step.  Every contender
uses its own standard module for the job, configured as alike as the
libraries allow: decay 0.95 per step, threshold 1, a fast-sigmoid
(SuperSpike) surrogate of slope 10, float32.

- creditlab: ``nn.Linear`` + ``cl.models.lif_sequence`` (the fused path:
  one autograd node per sequence; on CUDA its Triton kernels, the time loop
  inside one kernel for the feed-forward layer and one launch per step next
  to the recurrent product); ``creditlab-torch-loop`` (CUDA only): the same
  with ``backend="torch"``, the PyTorch loop; ``creditlab-step``: ``cl.models.LIF``
  stepped one step at a time under autograd (the reference path, with a
  1-unit readout).
- snnTorch 1.0: ``snn.Leaky`` / ``snn.RLeaky(all_to_all=True)`` in a Python
  loop, reset by subtraction.
- Norse 1.1: ``norse.torch.LIF`` / ``LIFRecurrent`` on the whole sequence
  (current-based LIF with a synaptic current, reset to 0).
- SpikingJelly 2.0: ``layer.Linear`` + ``neuron.LIFNode(step_mode="m",
  v_reset=None)``, its multi-step path (fused kernels on CUDA); recurrent:
  ``LinearRecurrentContainer`` around a single-step ``LIFNode``.
- ``matmul-floor`` (recurrent only): the matrix products the job cannot
  avoid, timed alone: per step the recurrent forward, input-gradient and
  weight-gradient products (B×H by H×H), plus the input projection's forward
  and weight-gradient products over all T·B rows that every contender does too.

    python benchmarks/snn_layers.py                 # CPU default sizes → results/snn_layers.{json,md}
    python benchmarks/snn_layers.py --sizes full    # T∈{100,1000}, B∈{32,128}, H∈{256,1024}
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from _common import write_atomic

HERE = Path(__file__).resolve().parent
CONTENDERS = ("creditlab", "creditlab-torch-loop", "creditlab-step", "snntorch", "norse", "spikingjelly",
              "matmul-floor")
#: contenders that are the same code as ``creditlab`` off CUDA (its Triton kernels are CUDA-only)
CUDA_ONLY = ("creditlab-torch-loop",)
TASKS = ("feedforward", "recurrent")
SIZES = {
    # (T, B, H); the CPU default keeps the whole run to minutes on two cores
    "cpu": [(100, 32, 256), (100, 128, 1024), (1000, 32, 256)],
    "full": list(itertools.product((100, 1000), (32, 128), (256, 1024))),
    # the full grid with the targets' size first, so that a run cut short still holds the verdicts
    "gpu": [(1000, 128, 1024), (100, 32, 256)] + [s for s in itertools.product((100, 1000), (32, 128), (256, 1024))
                                                 if s not in ((1000, 128, 1024), (100, 32, 256))],
}
DECAY = 0.95
SLOPE = 10.0
SECONDS_PER_RUN_LIMIT = 120.0


def make_step(contender: str, task: str, n_steps: int, batch: int, hidden: int,
              device: torch.device) -> Callable[[], torch.Tensor | None]:
    """A closure doing one forward + backward; returns the spike count where the layer exposes it."""
    torch.manual_seed(0)
    x = (torch.rand(n_steps, batch, hidden, device=device) < 0.1).float()
    recurrent = task == "recurrent"
    linear = nn.Linear(hidden, hidden, bias=False).to(device)
    with torch.no_grad():
        linear.weight.mul_(3.0)    # enough drive that the layer fires

    if contender in ("creditlab", "creditlab-torch-loop"):
        import creditlab as cl
        w_rec = nn.Parameter(torch.randn(hidden, hidden, device=device) / math.sqrt(hidden)) if recurrent else None
        surrogate = cl.models.Surrogate("fast_sigmoid", SLOPE)
        backend = "torch" if contender == "creditlab-torch-loop" else "auto"

        def step() -> torch.Tensor:
            spikes, _ = cl.models.lif_sequence(linear(x), alpha=DECAY, v_th=1.0, surrogate=surrogate, w_rec=w_rec,
                                               backend=backend)
            spikes.sum().backward()
            return spikes.detach().sum()
        return step

    if contender == "creditlab-step":
        import creditlab as cl
        dt = 1e-3
        model = cl.models.LIF(hidden, hidden, 1, dt=dt, tau_m=-dt / math.log(DECAY), recurrent=recurrent,
                              surrogate="fast_sigmoid", slope=SLOPE, w_in_gain=3.0).to(device)
        sim = cl.Simulator(model, cl.rules.SurrogateGradient(), fast=False)
        target = torch.zeros(n_steps, batch, 1, device=device)

        def step() -> None:
            sim.run(x, target)     # the reference path keeps no spike record without a monitor
        return step

    if contender == "snntorch":
        import snntorch as snn
        from snntorch import surrogate
        grad = surrogate.fast_sigmoid(slope=SLOPE)
        if recurrent:
            layer = snn.RLeaky(beta=DECAY, linear_features=hidden, spike_grad=grad, all_to_all=True,
                               reset_mechanism="subtract").to(device)
        else:
            layer = snn.Leaky(beta=DECAY, spike_grad=grad, reset_mechanism="subtract").to(device)

        def step() -> torch.Tensor:
            current = linear(x)
            if recurrent:
                spk, mem = layer.init_rleaky()
            else:
                mem = layer.init_leaky()
            out = []
            for t in range(n_steps):
                if recurrent:
                    spk, mem = layer(current[t], spk, mem)
                else:
                    spk, mem = layer(current[t], mem)
                out.append(spk)
            spikes = torch.stack(out)
            spikes.sum().backward()
            return spikes.detach().sum()
        return step

    if contender == "norse":
        import norse.torch as norse
        drive = x / (1.0 - DECAY)   # Norse integrates dt/τ_mem · i: match the other layers' drive
        p = norse.LIFParameters(method="super", alpha=torch.as_tensor(SLOPE), v_th=torch.as_tensor(1.0),
                                tau_mem_inv=torch.as_tensor(-math.log(DECAY) / 1e-3))
        if recurrent:
            layer = norse.LIFRecurrent(hidden, hidden, p=p).to(device)

            def step() -> torch.Tensor:
                spikes, _ = layer(drive)
                spikes.sum().backward()
                return spikes.detach().sum()
            return step
        layer = norse.LIF(p=p).to(device)

        def step() -> torch.Tensor:
            spikes, _ = layer(linear(drive))
            spikes.sum().backward()
            return spikes.detach().sum()
        return step

    if contender == "spikingjelly":
        from spikingjelly.activation_based import functional, layer as sj_layer, neuron, surrogate as sj_surrogate
        tau = 1.0 / (1.0 - DECAY)
        grad = sj_surrogate.SuperSpike(alpha=SLOPE)
        if recurrent:
            cell = neuron.LIFNode(tau=tau, decay_input=False, v_reset=None, surrogate_function=grad, step_mode="s")
            net = sj_layer.LinearRecurrentContainer(cell, hidden, hidden, bias=False, step_mode="m").to(device)
        else:
            net = neuron.LIFNode(tau=tau, decay_input=False, v_reset=None, surrogate_function=grad,
                                 step_mode="m").to(device)

        def step() -> torch.Tensor:
            functional.reset_net(net)
            spikes = net(linear(x))
            spikes.sum().backward()
            return spikes.detach().sum()
        return step

    if contender == "matmul-floor":
        w = torch.randn(hidden, hidden, device=device)
        z = (torch.rand(batch, hidden, device=device) < 0.1).float()
        g = torch.randn(batch, hidden, device=device)
        g_all = torch.randn(n_steps * batch, hidden, device=device)

        def step() -> None:
            x.flatten(0, 1) @ w.t()
            g_all.t() @ x.flatten(0, 1)
            for _ in range(n_steps):
                z @ w.t()
                g @ w
                g.t() @ z
        return step
    raise ValueError(f"contender must be one of {CONTENDERS}, got {contender!r}")


def measure(contender: str, task: str, n_steps: int, batch: int, hidden: int, device_name: str,
            repeats: int) -> dict:
    device = torch.device(device_name)
    step = make_step(contender, task, n_steps, batch, hidden, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step()
    times, spikes = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        count = step()
        sync()
        times.append(time.perf_counter() - start)
        spikes = None if count is None else float(count)
        if sum(times) > SECONDS_PER_RUN_LIMIT:
            break
    return {"contender": contender, "task": task, "T": n_steps, "B": batch, "H": hidden,
            "best_s": min(times), "runs": len(times),
            "rate_per_step": None if spikes is None else spikes / (n_steps * batch * hidden)}


def device_label(device_name: str) -> str:
    if device_name.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device_name))
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} thread(s))"


def table(rows: list[dict], device: str) -> str:
    lines = [f"Device: {device}; one forward + backward step, best of the timed runs.", "",
             "| task | T | B | H | contender | time (s) | × creditlab | spikes/step/neuron |",
             "|---|---|---|---|---|---|---|---|"]
    key = lambda r: (r["task"], r["T"], r["B"], r["H"])
    ours = {key(r): r["best_s"] for r in rows if r["contender"] == "creditlab" and "best_s" in r}
    for r in sorted(rows, key=lambda r: (key(r), CONTENDERS.index(r["contender"]))):
        if "error" in r:
            lines.append(f"| {r['task']} | {r['T']} | {r['B']} | {r['H']} | {r['contender']} | failed: {r['error']} | | |")
            continue
        ratio = r["best_s"] / ours[key(r)] if key(r) in ours else float("nan")
        rate = "" if r["rate_per_step"] is None else f"{r['rate_per_step']:.3f}"
        lines.append(f"| {r['task']} | {r['T']} | {r['B']} | {r['H']} | {r['contender']} | "
                     f"{r['best_s']:.4f} | {ratio:.2f} | {rate} |")
    return "\n".join(lines) + "\n"



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default=None,
                        help="size grid (default: gpu — the full grid, targets first — on CUDA, cpu otherwise)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default: 5 on CUDA, 3 on CPU)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="snn_layers", help="file stem of the JSON and table written to --out")
    parser.add_argument("--child", nargs=5, metavar=("CONTENDER", "TASK", "T", "B", "H"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.device.startswith("cuda") else 3)
    if args.child:
        contender, task, n_steps, batch, hidden = args.child
        print(json.dumps(measure(contender, task, int(n_steps), int(batch), int(hidden), args.device, repeats)))
        return
    sizes = SIZES[args.sizes or ("gpu" if args.device.startswith("cuda") else "cpu")]
    device = device_label(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {name: _version(name) for name in ("torch", "snntorch", "norse", "spikingjelly")}
    rows = []
    for (n_steps, batch, hidden), task, contender in itertools.product(sizes, args.tasks, args.contenders):
        if (contender == "matmul-floor" and task != "recurrent") or \
                (contender in CUDA_ONLY and not args.device.startswith("cuda")):
            continue
        cmd = [sys.executable, __file__, "--device", args.device, "--repeats", str(repeats),
               "--child", contender, task, str(n_steps), str(batch), str(hidden)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode == 0:
            row = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            row = {"contender": contender, "task": task, "T": n_steps, "B": batch, "H": hidden, "error": last[:200]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        # written after every row: a run stopped early keeps what it measured
        write_atomic(args.out / f"{args.name}.json", json.dumps(
            {"device": device, "versions": versions, "load_average": os.getloadavg(), "rows": rows}, indent=2))
        write_atomic(args.out / f"{args.name}.md", table(rows, device))
    print(table(rows, device))


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
