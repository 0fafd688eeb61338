"""The creditlab command: demo, train (with resume), plot, and one-line errors with exit status 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from creditlab import cli
from creditlab.training import CHECKPOINT, CONFIG, METRICS, load_checkpoint, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(argv, capsys):
    """main(argv) → (exit status, stdout, stderr), whether it returns or exits."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def train_args(run_dir, *extra):
    return ["train", "--model", "alif", "--rule", "surrogate", "--task", "delayed-response", "--n-rec", "8",
            "--batch-size", "2", "--run-dir", str(run_dir), "--quiet", *extra]


@pytest.fixture(autouse=True)
def quiet_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_smoke(tmp_path, capsys):
    status, out, err = run(["demo", "--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "demo"),
                            "--quiet"], capsys)
    assert status == 0, err
    for label in ("task", "model", "rule", "steps", "held-out loss", "held-out accuracy", "time per step",
                  "firing rate"):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert "LIF 40 + ALIF 40" in out and "->" in out
    assert f"figures written to {(tmp_path / 'demo').resolve()}" in out
    for name in ("raster.png", "membrane.png", "adaptation.png", "learning_curve.png"):
        data = (tmp_path / "demo" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
        assert str(tmp_path / "demo" / name) in out


def test_train_resume_and_plot(tmp_path, capsys):
    run_dir = tmp_path / "run"
    status, out, err = run(train_args(run_dir, "--steps", "2", "--checkpoint-every", "1", "--alignment-every", "1"),
                           capsys)
    assert status == 0, err
    assert out.startswith("step 2: cosine 1, loss ")
    config = json.loads((run_dir / CONFIG).read_text())
    assert config["rule"] == "surrogate" and config["task"]["name"] == "delayed-response"
    assert config["model"]["class"] == "LIF"
    assert config["model"]["kwargs"]["adaptive_fraction"] == 0.5 and config["model"]["kwargs"]["n_rec"] == 8
    status, _, err = run(train_args(run_dir, "--steps", "3", "--resume"), capsys)
    assert status == 0, err
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert load_checkpoint(run_dir / CHECKPOINT)["step"] == 3

    status, out, err = run(["plot", str(run_dir), "--out", str(tmp_path / "figs")], capsys)
    assert status == 0, err
    for name in ("learning_curve.png", "alignment.png", "raster.png", "membrane.png"):
        assert (tmp_path / "figs" / name).read_bytes()[:8] == PNG_MAGIC
        assert name in out


def test_plot_without_model_arguments_draws_the_learning_curve_only(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / CONFIG).write_text(json.dumps({"model": {"class": "LIF", "kwargs": None}, "rule": "bptt",
                                              "task": {"name": "evidence", "seed": 0}}))
    (run_dir / METRICS).write_text("".join(json.dumps({"step": s, "loss": 1 / s, "cosine": 0.9}) + "\n"
                                           for s in (1, 2, 3)))
    status, out, err = run(["plot", str(run_dir)], capsys)
    assert status == 0
    assert "no state figures (config.json does not record the model's constructor arguments)" in err
    assert sorted(p.name for p in run_dir.glob("*.png")) == ["alignment.png", "learning_curve.png"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--rule", "nope", "--task", "evidence", "--run-dir", "x"], "unknown rule 'nope'; choose from"),
    (["train", "--rule", "surrogate", "--task", "nope", "--run-dir", "x"], "unknown task 'nope'; choose from"),
    (["train", "--model", "gru", "--rule", "bptt", "--task", "evidence", "--run-dir", "x"],
     "model must be one of 'lif', 'alif', 'rate', 'mlp'; got 'gru'"),
    (["train", "--rule", "bptt", "--task", "evidence", "--run-dir", "x", "--steps", "0"],
     "argument --steps: expected an integer >= 1, got 0"),
    (["train", "--rule", "bptt", "--task", "evidence", "--run-dir", "x", "--batch-size", "many"],
     "argument --batch-size: expected an integer >= 1, got 'many'"),
    (["train", "--rule", "bptt", "--task", "evidence", "--run-dir", "x", "--lr", "-1"],
     "argument --lr: expected a finite number > 0"),
    (["train", "--rule", "bptt", "--task", "evidence", "--run-dir", "x", "--lr", "nan"],
     "argument --lr: expected a finite number > 0"),
    (["train", "--model", "rate", "--rule", "surrogate", "--task", "evidence", "--run-dir", "x"],
     "SurrogateGradient cannot train a RateRNN"),
    (["train", "--rule", "bptt", "--task", "evidence"], "the following arguments are required: --run-dir"),
    (["demo", "--steps", "-5"], "argument --steps: expected an integer >= 1, got -5"),
    (["plot", "no-such-dir"], "RUN_DIR 'no-such-dir' is not a directory"),
    (["fly"], "argument COMMAND: invalid choice: 'fly'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("creditlab: error: ") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_resume_without_checkpoint_and_reuse_of_a_run_dir(tmp_path, capsys):
    status, _, err = run(train_args(tmp_path / "empty", "--resume"), capsys)
    assert status == 2 and "holds no checkpoint.pt" in err and err.count("\n") == 1
    assert run(train_args(tmp_path / "run", "--steps", "1"), capsys)[0] == 0
    status, _, err = run(train_args(tmp_path / "run", "--steps", "1"), capsys)
    assert status == 2 and "already holds a run" in err


def test_plot_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    status, _, err = run(["plot", str(tmp_path)], capsys)
    assert status == 2 and "holds no config.json" in err


def test_subcommands_are_registered_in_one_table():
    parser = cli.make_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert list(subparsers.choices) == list(cli.SUBCOMMANDS) == ["demo", "train", "plot", "compare"]


def test_console_entry_point_runs_as_a_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "creditlab.cli", "train", "--rule", "bptt", "--task", "nope",
                           "--run-dir", str(tmp_path / "x")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("creditlab: error: unknown task 'nope'") and done.stderr.count("\n") == 1


def test_version(capsys):
    status, out, _ = run(["--version"], capsys)
    assert status == 0 and out.startswith("creditlab 0.")


@pytest.mark.slow
def test_demo_learns(tmp_path, capsys):
    """The full default demo: held-out accuracy well above chance."""
    status, out, err = run(["demo", "--out", str(tmp_path), "--quiet"], capsys)
    assert status == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("held-out accuracy"))
    final = float(line.split("->")[1].split("%")[0])
    assert final >= 85.0, out


def test_plot_of_a_feed_forward_run_draws_the_curves_only(tmp_path, capsys):
    run_dir = tmp_path / "mlp"
    assert cli.main(["train", "--model", "mlp", "--rule", "backprop", "--task", "spiral", "--steps", "3",
                     "--run-dir", str(run_dir), "--quiet"]) == 0
    assert cli.main(["plot", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert (run_dir / "learning_curve.png").stat().st_size > 0
    assert "no state figures" in captured.err and "Traceback" not in captured.err


def test_an_error_during_training_is_not_reported_as_bad_input(tmp_path, monkeypatch):
    """Only set-up errors (arguments, run directory, checkpoint) exit 2; a failure inside a training
    step keeps its traceback."""
    from creditlab.training import TrainingRun

    def broken_step(self, step):
        raise ValueError("a defect inside the training loop")

    monkeypatch.setattr(TrainingRun, "_step", broken_step)
    with pytest.raises(ValueError, match="defect inside the training loop"):
        cli.main(["train", "--model", "mlp", "--rule", "backprop", "--task", "spiral", "--steps", "2",
                  "--run-dir", str(tmp_path / "run"), "--quiet"])
