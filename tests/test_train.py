"""cl.train: the loop learns, logs, checkpoints atomically and resumes bit-identically."""
from __future__ import annotations

import json
import os

import pytest
import torch

import creditlab as cl
from creditlab.losses import MSE, WindowCrossEntropy
from creditlab.tasks.base import Task
from creditlab.training import CHECKPOINT, CONFIG, METRICS, load_checkpoint, read_metrics


class LouderChannel(Task):
    """Which of two Poisson input groups fires more?  Label = the louder group.

    Deliberately not registered (no class-level ``name``), so tests leave TASKS alone.
    """

    n_in, n_out, n_steps, dt = 4, 2, 20, 1e-3
    kind = "classification"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.name = "louder"
        self.loss = WindowCrossEntropy(window=5)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = torch.randint(0, 2, (batch_size,), generator=self.generator)
        rates = torch.full((batch_size, self.n_in), 0.1)
        rates[label == 0, :2] = 0.5
        rates[label == 1, 2:] = 0.5
        x = torch.bernoulli(rates.expand(self.n_steps, -1, -1), generator=self.generator)
        return x, label


class Integrate(Task):
    """Regression: output the running mean of a noisy scalar input."""

    n_in, n_out, n_steps, dt = 1, 1, 15, 1e-3
    kind = "regression"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.name = "integrate"
        self.loss = MSE()

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(self.n_steps, batch_size, 1, generator=self.generator)
        steps = torch.arange(1, self.n_steps + 1).view(-1, 1, 1)
        return x, x.cumsum(0) / steps


def lif(seed: int = 0) -> cl.models.LIF:
    return cl.models.LIF(n_in=4, n_rec=16, n_out=2, adaptive_fraction=0.5, seed=seed, w_in_gain=3.0)


def adam(model: torch.nn.Module, lr: float = 1e-2) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=lr)


def test_history_rows_and_metrics_file(tmp_path):
    model = lif()
    history = cl.train(model, cl.rules.SurrogateGradient(), LouderChannel(), steps=4, optimizer=adam(model),
                       run_dir=tmp_path, batch_size=8, progress=False, model_kwargs={"n_in": 4})
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    for row in history:
        assert set(row) == {"step", "loss", "accuracy", "seconds"}
        assert 0.0 <= row["accuracy"] <= 1.0 and row["loss"] > 0 and row["seconds"] > 0
    assert list(read_metrics(tmp_path)) == list(history)
    config = json.loads((tmp_path / CONFIG).read_text())
    assert config["model"] == {"class": "LIF", "module": "creditlab.models.lif", "kwargs": {"n_in": 4}}
    assert config["rule"] == "surrogate" and config["task"]["name"] == "louder" and config["steps"] == 4
    payload = load_checkpoint(tmp_path / CHECKPOINT)
    assert payload["step"] == 4
    assert torch.equal(payload["model"]["w_rec"], model.w_rec)
    # atomic writes leave no temp files behind
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT, CONFIG, METRICS]


def test_training_lowers_the_loss_and_learns():
    torch.manual_seed(0)
    model = lif()
    history = cl.train(model, cl.rules.SurrogateGradient(), LouderChannel(seed=1), steps=40,
                       optimizer=adam(model, 2e-2), batch_size=32, progress=False)
    first = sum(r["loss"] for r in history[:5]) / 5
    last = sum(r["loss"] for r in history[-5:]) / 5
    assert last < 0.6 * first
    assert sum(r["accuracy"] for r in history[-5:]) / 5 > 0.9


def test_regression_task_reports_nmse_and_eval_metrics():
    model = cl.models.RateRNN(n_in=1, n_rec=12, n_out=1, tau=3e-3, seed=0)
    history = cl.train(model, cl.rules.BPTT(), Integrate(), steps=30, optimizer=adam(model, 3e-2),
                       batch_size=16, eval_every=10, progress=False)
    assert all("nmse" in r and "accuracy" not in r for r in history)
    evaluated = [r for r in history if "eval_nmse" in r]
    assert [r["step"] for r in evaluated] == [10, 20, 30]
    assert evaluated[-1]["eval_nmse"] < 0.5 * history[0]["nmse"]


def test_held_out_stream_leaves_training_stream_untouched():
    def batches(eval_every):
        model = lif()
        task = LouderChannel(seed=3)
        cl.train(model, cl.rules.SurrogateGradient(), task, steps=3, optimizer=adam(model), batch_size=4,
                 eval_every=eval_every, progress=False)
        return task.sample(4)[0]

    assert torch.equal(batches(None), batches(1))


def _train(run_dir, steps, resume):
    torch.manual_seed(123)  # a fresh process: the global RNG is whatever the checkpoint restores
    model = lif(seed=7)
    task = LouderChannel(seed=5)
    cl.train(model, cl.rules.SurrogateGradient(), task, steps=steps, optimizer=adam(model), run_dir=run_dir,
             batch_size=8, resume=resume, checkpoint_every=2, eval_every=2, progress=False)
    return model


def test_resume_is_bit_identical(tmp_path):
    straight = _train(tmp_path / "straight", 6, resume=False)
    _train(tmp_path / "split", 3, resume=False)
    resumed = _train(tmp_path / "split", 6, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rows = read_metrics(tmp_path / "split")
    assert [r["step"] for r in rows] == list(range(1, 7))
    reference = read_metrics(tmp_path / "straight")
    for row, ref in zip(rows, reference):
        ref.pop("seconds")
        # the first leg also evaluated at its own last step (3): compare what both logged
        assert {k: row[k] for k in ref} == ref


def test_resume_discards_metrics_logged_after_the_checkpoint(tmp_path):
    _train(tmp_path, 4, resume=False)            # checkpoints at 2 and 4
    payload = load_checkpoint(tmp_path / CHECKPOINT)
    payload["step"] = 2                          # as if the run died after logging steps 3 and 4
    torch.save(payload, tmp_path / CHECKPOINT)
    _train(tmp_path, 5, resume=True)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]


def test_alignment_of_bptt_with_the_exact_gradient_is_one():
    model = cl.models.RateRNN(n_in=1, n_rec=8, n_out=1, seed=0)
    history = cl.train(model, cl.rules.BPTT(), Integrate(), steps=4, optimizer=adam(model), batch_size=4,
                       alignment_every=2, progress=False)
    cosines = [r["cosine"] for r in history if "cosine" in r]
    assert len(cosines) == 3  # steps 1, 2 and 4
    assert all(c == pytest.approx(1.0, abs=1e-6) for c in cosines)
    per_parameter = history[0]["cosine_per_parameter"]
    assert set(per_parameter) == {n for n, _ in model.named_parameters()}
    assert all(c == pytest.approx(1.0, abs=1e-6) for c in per_parameter.values())


def test_monitors_record_the_last_step():
    model = lif()
    history = cl.train(model, cl.rules.SurrogateGradient(), LouderChannel(), steps=2, batch_size=3,
                       monitors=("spikes", "v"), progress=False)
    assert history.record.spikes.shape == (20, 3, 16)
    assert history.record.v.shape == (20, 3, 16)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"steps": 0}, ValueError, "steps"),
    ({"steps": 2.5}, TypeError, "steps"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"optimizer": "adam"}, TypeError, "optimizer"),
    ({"resume": True}, ValueError, "run_dir"),
    ({"eval_every": -1}, ValueError, "eval_every"),
    ({"model_kwargs": {"surrogate": object()}}, TypeError, "model_kwargs"),
])
def test_bad_arguments(kwargs, error, match):
    model = lif()
    args = {"steps": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        cl.train(model, cl.rules.SurrogateGradient(), LouderChannel(), **args)


def test_optimizer_over_other_parameters_is_refused():
    model, other = lif(), lif()
    with pytest.raises(ValueError, match="not parameters of the model"):
        cl.train(model, cl.rules.SurrogateGradient(), LouderChannel(), steps=1, optimizer=adam(other),
                 progress=False)


def test_run_dir_errors(tmp_path):
    model = lif()
    rule, task = cl.rules.SurrogateGradient(), LouderChannel()
    with pytest.raises(ValueError, match="holds no checkpoint.pt"):
        cl.train(model, rule, task, steps=1, run_dir=tmp_path / "empty", resume=True, progress=False)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        cl.train(model, rule, task, steps=1, run_dir=afile, progress=False)
    cl.train(model, rule, task, steps=1, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        cl.train(model, rule, task, steps=1, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="trained rule 'surrogate', not 'bptt'"):
        cl.train(model, cl.rules.BPTT(), task, steps=2, run_dir=tmp_path / "run", resume=True, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_run_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="not writable|cannot be created"):
            cl.train(lif(), cl.rules.SurrogateGradient(), LouderChannel(), steps=1, run_dir=locked / "run",
                     progress=False)
    finally:
        locked.chmod(0o700)
