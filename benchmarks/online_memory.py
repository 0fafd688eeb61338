"""Peak memory and time per step of online rules against BPTT, for T = 1 000 and 10 000.

Each (rule, model, T) runs in a fresh process, which builds the model and the
input, then measures one ``Simulator.run`` with the rule attached under
:class:`creditlab.profiling.PeakMemory` (peak RSS above the RSS before the
run; the input sequence, O(T) for every rule, is allocated before).  Each case
is repeated in ``--repeats`` fresh processes, whose resident-set peaks differ
by a few MiB with the allocator's layout; the median is reported, and the
range is kept in the JSON.

The children run with glibc's mmap threshold fixed at its default 128 KiB
(``MALLOC_MMAP_THRESHOLD_``).  Left dynamic, glibc raises the threshold each
time a large block is freed, after which megabyte tensors are carved from the
heap and their pages stay resident when freed: the RSS peak then reflects the
allocator's history (which differs between T = 1 000 and T = 10 000 for the
same live tensors) rather than the memory a rule holds.  With the threshold
fixed, every tensor above 128 KiB is mapped on allocation and returned on
free, so the peak tracks live tensors.  The one O(T) buffer every rule keeps
is the outputs ``[T, B, K]`` (2.4 MiB at T = 10 000 here).

    python benchmarks/online_memory.py     # writes benchmarks/results/online_memory.{json,md}
"""
from __future__ import annotations

import argparse
import json
import statistics
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: "forward" is the forward-only run (no rule, no graph): the baseline of time per step
#: "eprop-one-core" is LIF e-prop with its trace pass kept on the simulating thread (trace_thread=False)
CASES = [("forward", "rate"), ("forward", "lif"), ("bptt", "rate"), ("rflo", "rate"), ("eprop", "rate"), ("node-perturbation", "rate"),
         ("surrogate", "lif"), ("eprop", "lif"), ("eprop-one-core", "lif"), ("node-perturbation", "lif")]
SIZES = dict(n_in=20, n_rec=256, n_out=2, batch=32)
#: glibc's default starting mmap threshold, pinned so it stops adapting (see the module docstring)
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "OMP_NUM_THREADS": "1"}


def measure(rule_name: str, model_name: str, n_steps: int) -> dict:
    import torch
    import creditlab as cl
    from creditlab.profiling import PeakMemory

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if model_name == "lif":
        model = cl.models.LIF(SIZES["n_in"], SIZES["n_rec"], SIZES["n_out"], adaptive_fraction=0.5, seed=0)
    else:
        model = cl.models.RateRNN(SIZES["n_in"], SIZES["n_rec"], SIZES["n_out"], seed=0)
    forward_only = rule_name == "forward"
    if forward_only:
        rule = None
    elif rule_name == "eprop-one-core":
        rule = cl.rules.EProp(trace_thread=False)
    else:
        rule = cl.rules.RULES[rule_name]()
    sim = cl.Simulator(model, rule)
    x = (torch.rand(n_steps, SIZES["batch"], SIZES["n_in"]) < 0.05).float()
    y = torch.randn(n_steps, SIZES["batch"], SIZES["n_out"])
    with torch.set_grad_enabled(not forward_only):
        sim.run(x[:20], target=y[:20])           # warm-up: allocator and lazy init outside the mark
        with PeakMemory("cpu") as peak:
            start = time.perf_counter()
            sim.run(x, target=y)
            seconds = time.perf_counter() - start
    helper = getattr(rule, "_t", {}).get("spare") is not None    # EProp staged chunks for its helper thread
    return {"rule": rule_name, "model": model_name, "T": n_steps,
            "peak_mib": peak.mib, "ms_per_step": 1e3 * seconds / n_steps, "trace_thread": helper}


def measure_in_fresh_process(rule_name: str, model_name: str, n_steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--case", rule_name, model_name, str(n_steps)],
                         capture_output=True, text=True, check=True, env={**os.environ, **CHILD_ENV})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, metavar=("RULE", "MODEL", "T"))
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per case; the median peak and median time are kept")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.case[0], args.case[1], int(args.case[2]))))
        return
    cases = [(rule_name, model_name, n_steps) for rule_name, model_name in CASES for n_steps in args.steps]
    # rounds of every case, not every repeat of one case in a row: the machine's speed drifts over
    # minutes, and a drift should move all cases of a round alike, not the cases run during it
    trials: dict[tuple, list[dict]] = {case: [] for case in cases}
    for round_index in range(args.repeats):
        for case in cases:
            trials[case].append(measure_in_fresh_process(*case))
            print(round_index, trials[case][-1], flush=True)
    rows = []
    for case in cases:
        runs = trials[case]
        rows.append({**runs[0], "peak_mib": statistics.median(t["peak_mib"] for t in runs),
                     "peak_mib_range": [min(t["peak_mib"] for t in runs), max(t["peak_mib"] for t in runs)],
                     "ms_per_step": statistics.median(t["ms_per_step"] for t in runs),
                     "ms_per_step_range": [min(t["ms_per_step"] for t in runs), max(t["ms_per_step"] for t in runs)]})
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "online_memory.json").write_text(json.dumps({"sizes": SIZES, "rows": rows}, indent=2))
    lines = ["| rule | model | " + " | ".join(f"peak MiB T={t}" for t in args.steps)
             + " | ratio | " + " | ".join(f"ms/step T={t}" for t in args.steps) + " |",
             "|---|---|" + "---|" * (2 * len(args.steps) + 1)]
    for rule_name, model_name in CASES:
        got = {r["T"]: r for r in rows if r["rule"] == rule_name and r["model"] == model_name}
        peaks = [got[t]["peak_mib"] for t in args.steps]
        ratio = peaks[-1] / max(peaks[0], 1e-3)
        lines.append(f"| {rule_name} | {model_name} | " + " | ".join(f"{p:.1f}" for p in peaks)
                     + f" | {ratio:.2f} | " + " | ".join(f"{got[t]['ms_per_step']:.3f}" for t in args.steps) + " |")
    table = "\n".join(lines)
    (out_dir / "online_memory.md").write_text(
        f"One `Simulator.run`, batch {SIZES['batch']}, {SIZES['n_in']} inputs, {SIZES['n_rec']} units, "
        f"{SIZES['n_out']} outputs, CPU, one PyTorch thread (`torch.set_num_threads(1)`); LIF e-prop "
        f"runs its compiled trace pass on a second core (its helper thread, chosen because a CPU is left "
        f"over), except the `eprop-one-core` row (`EProp(trace_thread=False)`); peak memory above the pre-run RSS "
        f"(median of {args.repeats} fresh processes, glibc mmap threshold pinned at 128 KiB), "
        f"median time per step; the processes run in {args.repeats} rounds of every case, and the JSON keeps "
        f"each case's range.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
