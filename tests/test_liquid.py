"""Liquid-state machine and the spike-pattern task: wiring, delays, ridge readout, batching, learning."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import creditlab as cl
from creditlab.models import LiquidState
from creditlab.models.liquid import MAASS_CONNECTIVITY, MAASS_STRENGTH
from creditlab.tasks import SpikePatterns


def pair_type(exc: np.ndarray, pre: int, post: int) -> str:
    return ("E" if exc[pre] else "I") + ("E" if exc[post] else "I")


def test_population_split_and_grid_positions():
    liq = LiquidState(3, grid=(15, 3, 3), seed=0)
    assert (liq.n_units, liq.n_exc, liq.n_inh) == (135, 108, 27)
    points = {tuple(p) for p in liq.positions.long().tolist()}
    assert points == {(i, j, k) for i in range(15) for j in range(3) for k in range(3)}
    assert liq.populations() == {"E": slice(0, 108), "I": slice(108, 135)}
    assert LiquidState(3, grid=(4, 4, 4), n_inh=10, seed=0).n_exc == 54


def test_connectivity_follows_the_distance_rule_by_pair_type():
    lam = 2.0
    counts = {k: 0 for k in MAASS_CONNECTIVITY}
    expected = {k: 0.0 for k in MAASS_CONNECTIVITY}
    variance = {k: 0.0 for k in MAASS_CONNECTIVITY}
    for seed in range(4):
        liq = LiquidState(2, grid=(10, 4, 4), lambda_=lam, seed=seed)
        w = liq.w_rec.detach().numpy()
        pos = liq.positions.numpy()
        exc = np.arange(liq.n_units) < liq.n_exc
        assert np.all(np.diag(w) == 0)
        assert np.all(w[:, exc] >= 0) and np.all(w[:, ~exc] <= 0)       # sign of the presynaptic type
        for pre in range(liq.n_units):
            for post in range(liq.n_units):
                if pre == post:
                    continue
                key = pair_type(exc, pre, post)
                p = MAASS_CONNECTIVITY[key] * math.exp(-(np.linalg.norm(pos[pre] - pos[post]) / lam) ** 2)
                expected[key] += p
                variance[key] += p * (1 - p)
                counts[key] += int(w[post, pre] != 0)
    for key in counts:
        assert abs(counts[key] - expected[key]) < 4 * math.sqrt(variance[key]), key


def test_weights_have_gamma_means_of_the_papers_ratios():
    liq = LiquidState(2, grid=(12, 6, 6), lambda_=3.0, weight_scale=0.5, input_scale=1.0, seed=0)
    w = liq.w_rec.detach().double().numpy()
    exc = np.arange(liq.n_units) < liq.n_exc
    for key, strength in MAASS_STRENGTH.items():
        post = exc if key[1] == "E" else ~exc
        pre = exc if key[0] == "E" else ~exc
        values = np.abs(w[np.ix_(post, pre)])
        values = values[values != 0]
        assert values.mean() == pytest.approx(0.5 * strength, rel=0.1), key
        assert values.std() / values.mean() == pytest.approx(0.5, rel=0.15), key    # Gamma k = 4
    w_in = liq.w_in.detach().double().numpy()
    assert (w_in != 0).mean() == pytest.approx(0.3, abs=0.05)
    assert w_in[exc][w_in[exc] != 0].mean() == pytest.approx(1.0, rel=0.1)
    assert w_in[~exc][w_in[~exc] != 0].mean() == pytest.approx(0.5, rel=0.15)


def test_delays_in_seconds_arrive_that_many_steps_later():
    liq = LiquidState(1, n_out=1, grid=(2, 1, 1), n_inh=0, lambda_=100.0,
                      connectivity={"EE": 1.0, "EI": 1.0, "IE": 1.0, "II": 1.0},
                      delays=3e-3, dt=1e-3, seed=0)
    assert torch.equal(liq.core.delays, torch.tensor([[2, 2], [2, 2]]))   # 3 steps = the recurrent step + 2
    with torch.no_grad():
        liq.core.w_in.copy_(torch.tensor([[2.0], [0.0]]))                   # only neuron 0 hears the input
    x = torch.zeros(10, 1, 1)
    x[0] = 1.0
    record = cl.Simulator(liq, monitors=("z", "v")).run(x).record
    assert record.z[0, 0, 0] == 1 and record.z[:, 0, 0].sum() == 1
    v1 = record.v[:, 0, 1]
    assert torch.all(v1[:3] == 0) and v1[3] == pytest.approx(float(liq.w_rec[1, 0]))


def test_maass_delays_are_rounded_to_steps_per_pair_type():
    liq = LiquidState(1, grid=(5, 2, 2), delays={"EE": 1.5e-3, "EI": 0.8e-3, "IE": 0.8e-3, "II": 0.8e-3},
                      dt=0.5e-3, seed=1)
    exc = torch.arange(liq.n_units) < liq.n_exc
    d = liq.core.delays
    assert torch.all(d[exc][:, exc] == 2) and torch.all(d[~exc][:, exc] == 1) and torch.all(d[:, ~exc] == 1)


def test_ridge_readout_equals_independent_least_squares(float64):
    task = SpikePatterns(n_templates=3, duration=0.05, seed=1)
    x, labels = task.sample(6, dtype=torch.float64)
    liq = LiquidState(task.n_in, n_out=3, grid=(5, 3, 2), seed=2)
    r, _ = liq.states(x)
    assert r.abs().sum() > 0
    ridge, window = 0.3, 4

    def lstsq(design, target):
        # ridge as the augmented least-squares problem [X; √β I] w = [Y; 0]
        design = np.concatenate([np.ones((len(design), 1)), design], 1)
        aug_x = np.vstack([design, np.sqrt(ridge) * np.eye(design.shape[1])])
        aug_y = np.vstack([target, np.zeros((design.shape[1], target.shape[1]))])
        return np.linalg.lstsq(aug_x, aug_y, rcond=None)[0].T

    liq.fit_states(r, labels, window=window, ridge=ridge)
    rows = r[-window:].numpy().reshape(-1, liq.n_units)
    onehot = np.eye(3)[np.tile(labels.numpy(), window)]
    np.testing.assert_allclose(liq.w_out.detach().numpy(), lstsq(rows, onehot), rtol=1e-6, atol=1e-9)

    target = torch.randn(50, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    liq.fit(x, target, washout=10, ridge=ridge)
    expected = lstsq(r[10:].numpy().reshape(-1, liq.n_units), target[10:].numpy().reshape(-1, 3))
    np.testing.assert_allclose(liq.w_out.detach().numpy(), expected, rtol=1e-6, atol=1e-9)
    outputs, _ = liq.run(x)
    torch.testing.assert_close(outputs, r @ liq.w_out[:, 1:].t() + liq.w_out[:, 0])


def test_filtered_state_is_the_exponential_filter_of_the_spikes():
    task = SpikePatterns(duration=0.06, seed=3)
    x, _ = task.sample(2)
    liq = LiquidState(task.n_in, tau_readout=20e-3, seed=3)
    z, r, _ = liq.run_liquid(x)
    kappa, expected, acc = math.exp(-1e-3 / 20e-3), torch.zeros_like(r), torch.zeros_like(r[0])
    for t in range(len(z)):
        acc = kappa * acc + z[t]
        expected[t] = acc
    torch.testing.assert_close(r, expected)


def test_batched_trials_equal_separate_runs_and_the_engine_step():
    task = SpikePatterns(duration=0.08, seed=4)
    x, _ = task.sample(3)
    liq = LiquidState(task.n_in, n_out=task.n_out, delays=2e-3, seed=5)
    with torch.no_grad():
        liq.w_out.normal_(generator=torch.Generator().manual_seed(1))
    z, r, _ = liq.run_liquid(x)
    assert z.sum() > 0
    for b in range(3):
        zb, rb, _ = liq.run_liquid(x[:, b:b + 1])
        torch.testing.assert_close(zb[:, 0], z[:, b], rtol=0, atol=0)
        torch.testing.assert_close(rb[:, 0], r[:, b])
    result = cl.Simulator(liq, monitors=("spikes", "r")).run(x)
    torch.testing.assert_close(result.record.spikes.float(), z, rtol=0, atol=0)
    torch.testing.assert_close(result.record.r, r)
    torch.testing.assert_close(result.outputs, liq.run(x)[0])


def test_background_holds_a_silent_membrane_at_its_level():
    liq = LiquidState(1, grid=(3, 2, 2), background=0.6, seed=0)
    z, _, state = liq.run_liquid(torch.zeros(400, 2, 1))
    assert z.sum() == 0
    alpha = math.exp(-1e-3 / 30e-3)
    torch.testing.assert_close(state.v, torch.full((2, 12), 0.6 * (1 - alpha ** 400)))


def test_device_and_dtype_follow_the_module():
    liq = LiquidState(2, grid=(4, 2, 2), seed=0).double()
    assert liq.device == torch.device("cpu") and liq.dtype == torch.float64
    assert liq.core.delay_masks is None and liq.w_rec.dtype == torch.float64
    r, state = liq.states(torch.ones(5, 2, 2, dtype=torch.float64))
    assert r.dtype == torch.float64 and state.v.device == liq.device


def test_liquid_classifies_spike_patterns_above_chance():
    task = SpikePatterns(n_templates=4, seed=0)
    x_train, y_train = task.sample(300)
    x_test, y_test = task.sample(200)
    liq = LiquidState(task.n_in, n_out=task.n_out, seed=1)
    liq.fit(x_train, y_train, window=task.loss.window)
    accuracy = float((liq.classify(x_test, window=task.loss.window) == y_test).float().mean())
    assert accuracy > 0.8        # chance: 0.25; measured 0.95 with these seeds
    outputs, _ = liq.run(x_test)
    assert task.metrics(outputs, y_test)["accuracy"] == pytest.approx(accuracy)


@pytest.mark.parametrize("kwargs, match", [
    ({"weight_scale": 0.0}, "weight_scale"),
    ({"weight_scale": -1.0}, "weight_scale"),
    ({"input_scale": 0.0}, "input_scale"),
    ({"lambda_": 0.05}, "lambda_"),
    ({"lambda_": 0.0}, "lambda_"),
    ({"delays": 0.5e-3}, "delays"),
    ({"delays": {"EE": 1e-3}}, "delays"),
    ({"connectivity": {"EE": 0.3, "EI": 0.2, "IE": 1.4, "II": 0.1}}, "connectivity"),
    ({"n_exc": 100, "n_inh": 10}, "n_exc"),
    ({"n_inh": 200}, "n_inh"),
    ({"grid": (15, 3)}, "grid"),
    ({"input_fraction": 0.0}, "input_fraction"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LiquidState(2, **kwargs)


def test_bad_readout_arguments_are_named():
    liq = LiquidState(2, n_out=3, grid=(4, 2, 2), seed=0)
    r, _ = liq.states(torch.zeros(10, 4, 2))
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        liq.fit_states(r, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="window"):
        liq.fit_states(r, torch.tensor([0, 1, 2, 0]), window=11)
    with pytest.raises(ValueError, match="washout"):
        liq.fit_states(r, torch.zeros(10, 4, 3), washout=10)
    with pytest.raises(ValueError, match="y must have size 3 on axis 2"):
        liq.fit_states(r, torch.zeros(10, 4, 2))
    with pytest.raises(TypeError, match="x must have the liquid's dtype"):
        liq.states(torch.zeros(10, 4, 2, dtype=torch.float64))


# -- the task ---------------------------------------------------------------------------
def test_task_is_registered_seeded_and_frozen():
    assert cl.tasks.TASKS["spike-patterns"] is SpikePatterns
    a, b = SpikePatterns(seed=7), SpikePatterns(seed=7)
    torch.testing.assert_close(a.templates, b.templates)
    xa, ya = a.sample(5)
    xb, yb = b.sample(5)
    torch.testing.assert_close(xa, xb)
    torch.testing.assert_close(ya, yb)
    assert xa.shape == (200, 5, 4) and a.loss.window == 10
    assert not torch.equal(SpikePatterns(seed=8).templates, a.templates)


def test_noiseless_trials_are_their_templates():
    task = SpikePatterns(n_templates=3, jitter=0.0, p_delete=0.0, noise_rate=0.0, seed=2)
    x, y = task.sample(20)
    for b in range(20):
        torch.testing.assert_close(x[:, b], task.templates[y[b]])
    assert SpikePatterns(p_delete=1.0, noise_rate=0.0).sample(4)[0].sum() == 0


def test_jitter_deletion_and_noise_statistics():
    task = SpikePatterns(n_templates=2, n_in=1, jitter=4e-3, p_delete=0.25, noise_rate=0.0, seed=3)
    task.templates = torch.zeros(2, 200, 1)
    task.templates[:, 100] = 1.0                          # one spike at step 100
    x, _ = task.sample(4000)
    step, trial = x[:, :, 0].nonzero(as_tuple=True)
    assert len(trial) / 4000 == pytest.approx(0.75, abs=0.03)
    shift = (step - 100).double()
    assert shift.mean().item() == pytest.approx(0.0, abs=0.2)
    assert shift.std().item() == pytest.approx(math.sqrt(16 + 1 / 12), rel=0.05)   # jitter ⊕ rounding
    noise = SpikePatterns(n_in=8, noise_rate=50.0, p_delete=1.0, seed=4)
    assert noise.sample(500)[0].mean().item() == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_templates": 1}, "n_templates"), ({"jitter": -1e-3}, "jitter"), ({"p_delete": 1.5}, "p_delete"),
    ({"readout_window": 0.3}, "readout_window"), ({"duration": 0.0105}, "duration"),
    ({"rate": 2000.0}, "rate"),
])
def test_bad_task_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpikePatterns(**kwargs)


def test_example_trains_prints_accuracy_and_writes_plots(load_example, tmp_path, capsys):
    example = load_example("liquid_state")
    numbers = example.main(["--train", "120", "--test", "60", "--out-dir", str(tmp_path)])
    assert numbers["accuracy"] > 0.6 and numbers["accuracy"] > numbers["input_only_accuracy"]
    assert "liquid readout accuracy" in capsys.readouterr().out
    for name in ("liquid_raster.png", "liquid_pca.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
