"""The paired-difference table of ``benchmarks/single_step_fmnist.py --paired``, checked by hand on
small results files: the README's Kolen-Pollack figures come from it."""
from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "single_step_fmnist.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("single_step_fmnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # the script's dataclass looks its module up by name while the script runs
    sys.modules.setdefault("single_step_fmnist", module)
    spec.loader.exec_module(module)
    return module


bench = _load_script()


def _write_results(path: Path, runs: dict[str, dict[int, list[float]]], epochs: int = 3) -> Path:
    """A results JSON as the script writes it (only the fields the paired table reads)."""
    results = {row: [{"seed": s, "epochs": epochs, "accuracy_per_epoch": curve} for s, curve in by_seed.items()]
               for row, by_seed in runs.items()}
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps({"device": "test", "fmnist": {"epochs": epochs,
                                                                  "results": {"fashion-mnist": results}}}))
    return path.with_suffix(".md")


def _cells(lines: list[str], row: str) -> list[str]:
    line = next(line for line in lines if line.startswith(f"| {row} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_paired_gaps_pool_seeds_across_files_and_pair_them_by_seed(tmp_path: Path) -> None:
    first = _write_results(tmp_path / "a", {"backprop": {0: [80.0, 88.0, 90.0], 1: [80.0, 86.0, 88.0]},
                                            "kp": {0: [80.0, 87.0, 89.0], 1: [80.0, 86.0, 86.0]}})
    second = _write_results(tmp_path / "b", {"backprop": {2: [80.0, 89.0, 87.0]},
                                             "kp": {2: [80.0, 88.0, 87.5]}})
    lines = bench.paired_gaps([first, second])
    final_gaps = [89.0 - 90.0, 86.0 - 88.0, 87.5 - 87.0]
    last3_gaps = [statistics.mean(k) - statistics.mean(b) for k, b in
                  [([80, 87, 89], [80, 88, 90]), ([80, 86, 86], [80, 86, 88]), ([80, 88, 87.5], [80, 89, 87])]]
    best_gaps = [89.0 - 90.0, 86.0 - 88.0, 88.0 - 89.0]

    def cell(gaps: list[float]) -> str:
        mean, se = statistics.mean(gaps), statistics.stdev(gaps) / len(gaps) ** 0.5
        return f"{mean:+.2f}".replace("-", "−") + f" ± {se:.2f}"

    kp = _cells(lines, "kp")
    assert kp[1] == "3 (0–2)"
    assert kp[2] == f"{statistics.mean([89.0, 86.0, 87.5]):.2f}"
    assert kp[3] == cell(final_gaps)
    assert kp[5] == cell(last3_gaps)
    assert kp[7] == cell(best_gaps)
    assert _cells(lines, "backprop")[3] == "—"


def test_paired_gaps_skip_rows_with_fewer_than_three_shared_seeds(tmp_path: Path) -> None:
    path = _write_results(tmp_path / "a", {"backprop": {0: [1.0, 2.0, 3.0], 1: [1.0, 2.0, 3.0], 2: [1.0, 2.0, 3.0]},
                                           "fa": {0: [1.0, 2.0, 3.0], 5: [1.0, 2.0, 3.0], 6: [1.0, 2.0, 3.0]}})
    assert not any(line.startswith("| fa |") for line in bench.paired_gaps([path]))


def test_paired_gaps_name_a_missing_results_file_or_reference(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no results JSON beside it"):
        bench.paired_gaps([tmp_path / "absent.md"])
    path = _write_results(tmp_path / "a", {"kp": {0: [1.0, 2.0, 3.0]}})
    with pytest.raises(SystemExit, match="no backprop runs"):
        bench.paired_gaps([path])
