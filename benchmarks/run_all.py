"""Run every side-by-side benchmark and write ``benchmarks/RESULTS.md`` and ``RESULTS.json``.

Each benchmark script runs its contenders one process each and leaves a
table and JSON in ``benchmarks/results/``; this runner calls them in turn,
runs the fast-path equality tests, adds what a CUDA machine measured
(``benchmarks/gpu_check.sh``, its files copied into ``results/``), then checks the measured numbers against the performance targets and
writes one report: the verdicts, each benchmark's table, the equality
check's output, and ``benchmarks/notes.md`` (why missed targets are missed,
with the profile evidence).

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/run_all.py                  # everything (about 25 min on a 2-core CPU)
    python benchmarks/run_all.py --only snn_layers reservoir
    python benchmarks/run_all.py --report-only    # rebuild RESULTS.md from results/
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from _common import write_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
#: benchmark name → (script, the issue's part it measures)
BENCHMARKS = {
    "snn_layers": ("snn_layers.py", "(a) feed-forward and (b) recurrent LIF, surrogate-gradient step"),
    "online_memory": ("online_memory.py", "(c) online rules: time per step and peak memory"),
    "cuba": ("cuba.py", "(d) CUBA network against Brian2"),
    "reservoir": ("reservoir_mackey_glass.py", "(e) echo-state Mackey-Glass against ReservoirPy"),
}
CHILD_ENV = {"OMP_NUM_THREADS": "1"}
#: results written on a CUDA machine by benchmarks/gpu_check.sh and copied here → their section title
GPU_RESULTS = {
    "snn_layers_gpu": "(a), (b) on a CUDA GPU: feed-forward and recurrent LIF, surrogate-gradient step",
    "cuba_gpu": "(d) on a CUDA GPU: CUBA, batches of independent trials",
}


def run_benchmark(name: str) -> None:
    script = HERE / BENCHMARKS[name][0]
    print(f"== {name}: {script.name}", flush=True)
    subprocess.run([sys.executable, str(script)], check=True, cwd=ROOT, env={**os.environ, **CHILD_ENV})


#: the tests that hold every fast path to the step-by-step reference
EQUALITY_TESTS = ("tests/test_fused.py", "tests/test_fused_triton.py", "tests/test_cuba_triton.py", "tests/test_native.py")


def equality_check() -> str:
    """Output of the fast-path equality tests (CUDA cases run when a GPU is present)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", *EQUALITY_TESTS], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **CHILD_ENV})
    lines = [line for line in out.stdout.splitlines() if line.startswith(("PASSED", "FAILED", "ERROR"))]
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()[-300:]
    return "\n".join(lines + [summary])


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def layer_row(rows: list[dict], contender: str, task: str, size: tuple[int, int, int]) -> dict | None:
    for r in rows:
        if (r["contender"], r["task"], (r["T"], r["B"], r["H"])) == (contender, task, size) and "best_s" in r:
            return r
    return None


def verdicts_layers(cpu: dict | None, gpu: dict | None) -> list[tuple[str, str, str]]:
    """(a) and (b): the GPU targets from a CUDA run (results/snn_layers_gpu.json), (b)'s CPU target here."""
    out = []
    big = (1000, 128, 1024)
    rows = gpu["rows"] if gpu else []
    ours = layer_row(rows, "creditlab", "feedforward", big)
    if ours:
        jelly, snn = layer_row(rows, "spikingjelly", "feedforward", big), layer_row(rows, "snntorch", "feedforward", big)
        ratio_sj = ours["best_s"] / jelly["best_s"] if jelly else float("nan")
        speedup = snn["best_s"] / ours["best_s"] if snn else float("nan")
        out.append((f"(a) ≤ 1.5× SpikingJelly, ≥ 100× snnTorch ({gpu['device']}, T=1000 B=128 H=1024)",
                    f"creditlab {ours['best_s'] * 1e3:.1f} ms: {ratio_sj:.2f}× SpikingJelly "
                    f"({jelly['best_s'] * 1e3:.1f} ms), {speedup:.0f}× faster than snnTorch ({snn['best_s']:.3f} s)",
                    "met" if ratio_sj <= 1.5 and speedup >= 100 else
                    ("SpikingJelly part met, snnTorch part missed" if ratio_sj <= 1.5 else "missed")))
    rec = layer_row(rows, "creditlab", "recurrent", big)
    norse, floor = layer_row(rows, "norse", "recurrent", big), layer_row(rows, "matmul-floor", "recurrent", big)
    if rec and norse and floor:
        vs_norse, vs_floor = norse["best_s"] / rec["best_s"], rec["best_s"] / floor["best_s"]
        out.append((f"(b) ≥ 8× Norse and ≤ 1.5× the matmul floor ({gpu['device']}, T=1000 B=128 H=1024)",
                    f"creditlab {rec['best_s'] * 1e3:.0f} ms: {vs_norse:.1f}× faster than Norse "
                    f"({norse['best_s'] * 1e3:.0f} ms), {vs_floor:.2f}× the floor ({floor['best_s'] * 1e3:.0f} ms)",
                    "met" if vs_norse >= 8 and vs_floor <= 1.5 else "missed"))
    if not out:
        out.append(("(a), (b) GPU targets", "no CUDA run in results/ (benchmarks/gpu_check.sh)", "needs a CUDA GPU"))
    small = (100, 32, 256)
    rows = cpu["rows"] if cpu else []
    rec, norse = layer_row(rows, "creditlab", "recurrent", small), layer_row(rows, "norse", "recurrent", small)
    if rec and norse:
        out.append(("(b) CPU: no slower than Norse (recurrent, T=100 B=32 H=256)",
                    f"creditlab {rec['best_s'] * 1e3:.1f} ms, Norse {norse['best_s'] * 1e3:.1f} ms",
                    "met" if rec["best_s"] <= norse["best_s"] else "missed"))
    return out


def verdicts_online(data: dict | None) -> list[tuple[str, str, str]]:
    if data is None:
        return [("(c)", "not run", "–")]
    rows = data["rows"]
    get = lambda rule, model, t: next((r for r in rows if (r["rule"], r["model"], r["T"]) == (rule, model, t)), None)
    out = []
    labels = {("eprop", "rate"): "rate", ("eprop", "lif"): "lif, trace pass on a second core",
              ("eprop-one-core", "lif"): "lif, one core"}
    for (rule, model), label in labels.items():
        eprop, forward = get(rule, model, 1000), get("forward", model, 1000)
        if eprop and forward:
            ratio = eprop["ms_per_step"] / forward["ms_per_step"]
            out.append((f"(c) e-prop time per step ≤ 2× forward-only ({label}, T=1000)",
                        f"{eprop['ms_per_step']:.3f} vs {forward['ms_per_step']:.3f} ms ({ratio:.1f}×)",
                        "met" if ratio <= 2 else "missed"))
    for rule, model in (("eprop", "rate"), ("eprop", "lif"), ("rflo", "rate")):
        short, long = get(rule, model, 1000), get(rule, model, 10000)
        if short and long:
            ratio = long["peak_mib"] / short["peak_mib"]
            out.append((f"(c) {rule} ({model}) peak memory T=10000 ≤ 1.2× T=1000",
                        f"{ratio:.2f}×", "met" if ratio <= 1.2 else "missed"))
    return out


def verdicts_cuba(data: dict | None, gpu: dict | None) -> list[tuple[str, str, str]]:
    if data is None:
        return [("(d)", "not run", "–")]
    rows = data["rows"]
    ours = next((r for r in rows if r["contender"] == "creditlab compiled" and r["batch"] == 1), None)
    brian = [r for r in rows if r["contender"] in ("brian2 cython", "brian2 cpp_standalone")]
    if not ours or not brian:
        return [("(d)", "incomplete", "–")]
    fastest = min(brian, key=lambda r: r["seconds"])
    out = [("(d) CUBA, one trial on this CPU faster than Brian2's fastest CPU target",
            f"creditlab {ours['seconds']:.2f} s, {fastest['contender']} {fastest['seconds']:.2f} s",
            "met" if ours["seconds"] < fastest["seconds"] else "missed")]
    batch = next((r for r in (gpu or {}).get("rows", []) if r.get("batch") == 1000 and "seconds" in r), None)
    if batch is None:
        out.append(("(d) 1000 trials batched on a GPU faster than one Brian2 trial on the CPU",
                    "no CUDA run in results/ (benchmarks/gpu_check.sh)", "needs a CUDA GPU"))
    else:
        ratio = batch["seconds"] / fastest["seconds"]
        out.append((f"(d) 1000 trials batched on a GPU ({batch['device']}) faster than one Brian2 trial on the CPU",
                    f"1000 trials {batch['seconds']:.2f} s, one {fastest['contender']} trial {fastest['seconds']:.2f} s "
                    f"({ratio:.1f}× longer)", "met" if ratio < 1 else "missed"))
    return out


def verdicts_reservoir(data: dict | None) -> list[tuple[str, str, str]]:
    if data is None:
        return [("(e)", "not run", "–")]
    rows = {r.get("key", r["contender"].split()[0]): r for r in data["rows"]}
    ours, peer = rows.get("creditlab"), rows.get("reservoirpy")
    if not ours or not peer:
        return [("(e)", "incomplete", "–")]
    speedup = peer["seconds"] / ours["seconds"]
    return [("(e) echo-state fit + run ≥ 3× faster than ReservoirPy at equal NRMSE",
             f"{speedup:.2f}× (NRMSE {ours['nrmse']:.2g} vs {peer['nrmse']:.2g})",
             "met" if speedup >= 3 and ours["nrmse"] <= peer["nrmse"] else "missed")]


def report(check: str) -> tuple[str, dict]:
    """RESULTS.md's text and RESULTS.json's content."""
    data = {name: load(name) for name in (*BENCHMARKS, *GPU_RESULTS)}
    verdicts = (verdicts_layers(data["snn_layers"], data["snn_layers_gpu"]) + verdicts_online(data["online_memory"])
                + verdicts_cuba(data["cuba"], data["cuba_gpu"]) + verdicts_reservoir(data["reservoir"]))
    lines = ["# Benchmarks", "",
             f"Written by `python benchmarks/run_all.py` on {datetime.date.today()} "
             f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}); "
             "each table names its device.  Contenders are installed from `benchmarks/requirements.txt`.", "",
             "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {target} | {measured} | {verdict} |" for target, measured, verdict in verdicts]
    for name, title in [(name, title) for name, (_, title) in BENCHMARKS.items()] + list(GPU_RESULTS.items()):
        table = RESULTS / f"{name}.md"
        lines += ["", f"## {title}", "", table.read_text().strip() if table.exists() else "(not run)"]
    lines += ["", "## Fast paths equal the reference path", "",
              f"`pytest {' '.join(EQUALITY_TESTS)}` on this machine (the fused LIF path and the compiled "
              "CPU loops; the Triton kernels in Triton's CPU interpreter):", "",
              "```", check, "```"]
    gpu_check = RESULTS / "gpu_equality.txt"
    if gpu_check.exists():
        lines += ["", "On a CUDA GPU (`benchmarks/gpu_check.sh`, the Triton kernels compiled; recorded from the "
                  "last GPU session):", "", "```", gpu_check.read_text().strip(), "```"]
    notes = HERE / "notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    payload = {"verdicts": [dict(zip(("target", "measured", "verdict"), v)) for v in verdicts],
               "equality_check": check, "results": data}
    return "\n".join(lines) + "\n", payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--report-only", action="store_true", help="rebuild RESULTS.md from results/ without running")
    args = parser.parse_args()
    if not args.report_only:
        for name in args.only or BENCHMARKS:
            run_benchmark(name)
    check = equality_check()
    text, payload = report(check)
    write_atomic(HERE / "RESULTS.json", json.dumps(payload, indent=2))
    write_atomic(HERE / "RESULTS.md", text)
    print(text)


if __name__ == "__main__":
    main()
