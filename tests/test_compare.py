"""`creditlab compare`: every rule starts from the same weights and task stream; the table is consistent."""
import json

import pytest

from creditlab import compare
from creditlab.cli import main


def test_exact_rules_align_perfectly_and_share_the_start():
    runs = compare.compare("add", ["bptt", "rtrl", "rflo"], steps=3, batch_size=4, n_hidden=6,
                           align_every=1, isolate=False)
    by_rule = {r.rule: r for r in runs}
    assert by_rule["bptt"].mean_cosine == pytest.approx(1.0, abs=1e-6)
    assert by_rule["rtrl"].mean_cosine == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= by_rule["rflo"].mean_cosine < 0.999
    # Same initial weights and batches: the first step's loss is identical for every rule.
    first = {r.rule: r.history[0]["loss"] for r in runs}
    assert first["bptt"] == pytest.approx(first["rtrl"]) == pytest.approx(first["rflo"])
    # RTRL computes the same gradient as BPTT, so the trajectories agree.
    assert by_rule["rtrl"].history[-1]["loss"] == pytest.approx(by_rule["bptt"].history[-1]["loss"], rel=1e-4)
    for r in runs:
        assert r.seconds_per_step > 0 and set(r.metrics) >= {"loss", "nmse"}


def test_model_choice_follows_the_rules_and_task():
    assert compare.choose_model(compare.build_task("add", 0), ["bptt", "rflo"]) == "rate"
    assert compare.choose_model(compare.build_task("spiral", 0), ["backprop", "fa"]) == "mlp"
    with pytest.raises(ValueError, match="share no model"):
        compare.choose_model(compare.build_task("add", 0), ["rflo", "surrogate"])


def test_cli_compare_writes_table_json_and_plots(tmp_path, capsys):
    assert main(["compare", "--task", "add", "--rules", "bptt,eprop", "--steps", "2", "--batch-size", "4",
                 "--n-hidden", "6", "--align-every", "1", "--in-process", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| bptt | rate |" in printed and "| eprop | rate |" in printed
    rows = json.loads((tmp_path / "compare.json").read_text())
    assert [r["rule"] for r in rows] == ["bptt", "eprop"]
    for name in ("learning_curves.png", "alignment.png", "compare.md"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize("argv, word", [
    (["--task", "nope", "--rules", "bptt"], "unknown task"),
    (["--task", "add", "--rules", "nope"], "unknown rule"),
    (["--task", "add", "--rules", "bptt", "--model", "cnn"], "model"),
])
def test_cli_compare_bad_input_exits_2(argv, word, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _fresh_process(code: str) -> str:
    """Run ``code`` in a new interpreter: RSS high-water marks mean something only in a fresh process."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_peak_memory_sees_a_large_allocation_inside_the_block():
    out = _fresh_process(
        "import torch\n"
        "from creditlab.profiling import PeakMemory\n"
        "with PeakMemory('cpu') as peak:\n"
        "    block = torch.ones(64 * 2**20 // 4)\n"
        "    del block\n"
        "print(peak.mib)\n")
    assert 60 <= float(out) < 200


def test_step_memory_sees_the_unrolled_graph_of_bptt():
    # BPTT keeps T x B x N activations (60 x 64 x 256 floats, several per step) for the backward pass.
    out = _fresh_process(
        "from creditlab import compare\n"
        "task = compare.build_task('add', 0)\n"
        "cls, kwargs = compare.model_spec('rate', task, 256, 0)\n"
        "print(compare.step_memory(cls(**kwargs), 'bptt', task, 64))\n")
    assert float(out) > 10.0
