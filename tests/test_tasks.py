"""Temporal tasks and Randman: shapes, seeding, each target against its definition, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import creditlab as cl
from creditlab.losses import MSE, WindowCrossEntropy
from creditlab.tasks import (TASKS, AddTask, DelayedResponse, EvidenceAccumulation, PatternGeneration,
                             Randman, StoreRecall)

# small variants keep the suite fast; the defaults are checked separately
SMALL = {
    "evidence": lambda seed=0: EvidenceAccumulation(n_cues=3, cue_duration=0.02, cue_pause=0.01,
                                                    delay=0.03, recall_duration=0.02, seed=seed),
    "store-recall": lambda seed=0: StoreRecall(n_periods=6, period=0.05, p_store=0.3, seed=seed),
    "pattern": lambda seed=0: PatternGeneration(n_in=20, n_out=2, duration=0.2, seed=seed),
    "delayed-response": lambda seed=0: DelayedResponse(seed=seed),
    "add": lambda seed=0: AddTask(n_steps=60, seed=seed),
    "randman": lambda seed=0: Randman(n_classes=3, n_in=12, n_steps=40, n_reference=200, seed=seed),
}


def _two_batches(task, batch_size: int = 8):
    return task.sample(batch_size), task.sample(batch_size)


# ---------------------------------------------------------------- common contract

def test_every_task_is_registered_by_its_cli_name() -> None:
    for name, cls in [("evidence", EvidenceAccumulation), ("store-recall", StoreRecall),
                      ("pattern", PatternGeneration), ("delayed-response", DelayedResponse),
                      ("add", AddTask), ("randman", Randman)]:
        assert TASKS[name] is cls
    assert cl.tasks.EvidenceAccumulation is EvidenceAccumulation


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_and_dtypes(name: str) -> None:
    task = SMALL[name]()
    x, y = task.sample(batch_size=5)
    assert x.shape == (task.n_steps, 5, task.n_in) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    if task.kind == "classification":
        assert y.shape == (5,) and y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) < task.n_out
        assert isinstance(task.loss, WindowCrossEntropy)
    else:
        assert task.kind == "regression"
        assert y.shape == (task.n_steps, 5, task.n_out) and y.dtype == torch.float32
        assert isinstance(task.loss, MSE)
    x64, y64 = SMALL[name]().sample(batch_size=5, dtype=torch.float64)
    assert x64.dtype == torch.float64 and torch.equal(x64, x.double())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_batches_different_seed_different(name: str) -> None:
    (xa, ya), (xa2, ya2) = _two_batches(SMALL[name](seed=1))
    (xb, yb), _ = _two_batches(SMALL[name](seed=1))
    (xc, yc), _ = _two_batches(SMALL[name](seed=2))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    if name != "pattern":   # the pattern task repeats one frozen trial by definition
        assert not torch.equal(xa, xa2)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_state_dict_resumes_the_stream(name: str) -> None:
    task = SMALL[name](seed=3)
    task.sample(4)
    state = task.state_dict()
    x_next, y_next = task.sample(4)
    resumed = SMALL[name](seed=3)
    resumed.load_state_dict(state)
    x_res, y_res = resumed.sample(4)
    assert torch.equal(x_next, x_res) and torch.equal(y_next, y_res)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_loss_and_metrics_on_outputs_of_the_task_shape(name: str) -> None:
    task = SMALL[name]()
    x, y = task.sample(6)
    outputs = torch.randn(task.n_steps, 6, task.n_out, generator=torch.Generator().manual_seed(0))
    task.loss.check_target(tuple(outputs.shape), y)
    metrics = task.metrics(outputs, y)
    assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0
    if task.kind == "classification":
        perfect = 10.0 * torch.nn.functional.one_hot(y, task.n_out).float().expand(task.n_steps, -1, -1)
        best = task.metrics(perfect, y)
        assert best["accuracy"] == 1.0 and best["loss"] < 1e-3
        assert 0.0 <= metrics["accuracy"] <= 1.0
    else:
        best = task.metrics(y.clone(), y)
        assert best["loss"] == 0.0 and best["nmse"] == 0.0
        assert metrics["nmse"] > 0


def test_a_simulator_run_scores_a_task_batch_with_its_own_loss() -> None:
    task = SMALL["evidence"]()
    x, y = task.sample(4)
    net = cl.models.LIF(n_in=task.n_in, n_rec=16, n_out=task.n_out, dt=task.dt, seed=0)
    result = cl.Simulator(net).run(x, target=y, loss=task.loss)
    assert result.outputs.shape == (task.n_steps, 4, task.n_out)
    assert torch.isclose(result.loss, task.loss(result.outputs, y))


def test_cl_tasks_default_evidence_batch() -> None:
    x, y = cl.tasks.EvidenceAccumulation().sample(batch_size=64)
    assert x.shape == (2250, 64, 40) and y.shape == (64,)


# ---------------------------------------------------------------- evidence accumulation

def test_evidence_defaults_follow_bellec_2020() -> None:
    task = EvidenceAccumulation()
    assert (task.n_in, task.n_out, task.n_steps, task.n_cues) == (40, 2, 2250, 7)
    assert task.loss.window == 150
    assert (task.cue_window(0).start, task.cue_window(0).stop) == (50, 150)
    assert (task.cue_window(6).start, task.cue_window(6).stop) == (950, 1050)
    assert EvidenceAccumulation(n_cues=3, delay=0.1).n_steps == 700


def test_evidence_label_is_the_majority_side_counted_from_the_input() -> None:
    task = EvidenceAccumulation(n_cues=5, cue_duration=0.05, cue_pause=0.02, delay=0.05,
                                recall_duration=0.05, seed=4)
    x, label = task.sample(200)
    left, right = task.channel_group("left"), task.channel_group("right")
    right_cues = torch.zeros(200, dtype=torch.long)
    cue_steps = torch.zeros(task.n_steps, dtype=torch.bool)
    for k in range(task.n_cues):
        window = task.cue_window(k)
        cue_steps[window] = True
        n_left, n_right = x[window, :, left].sum((0, 2)), x[window, :, right].sum((0, 2))
        assert torch.all((n_left == 0) != (n_right == 0)), "exactly one side fires during a cue"
        right_cues += (n_right > 0).long()
    assert torch.equal(label, (right_cues > task.n_cues // 2).long())
    # cue channels are silent outside cues, recall channels outside the recall window
    assert x[~cue_steps][:, :, :2 * task.channels_per_group].sum() == 0
    recall = task.channel_group("recall")
    assert x[:task.n_steps - 50, :, recall].sum() == 0
    assert x[task.n_steps - 50:, :, recall].sum() > 0


def test_evidence_rates_and_label_balance() -> None:
    task = SMALL["evidence"](seed=5)
    x, label = task.sample(2000)
    p_bg = x[:, :, task.channel_group("background")].mean()
    n_bg = x[:, :, task.channel_group("background")].numel()
    assert abs(float(p_bg) - 0.01) < 5 * math.sqrt(0.01 * 0.99 / n_bg)
    recall = x[task.n_steps - 20:, :, task.channel_group("recall")]
    assert abs(float(recall.mean()) - 0.04) < 5 * math.sqrt(0.04 * 0.96 / recall.numel())
    assert abs(float(label.float().mean()) - 0.5) < 5 * math.sqrt(0.25 / 2000)


def test_evidence_without_minority_cues_puts_all_cues_on_one_side() -> None:
    task = EvidenceAccumulation(n_cues=3, cue_duration=0.02, cue_pause=0.01, delay=0.0,
                                recall_duration=0.01, p_minority=0.0, seed=6)
    x, label = task.sample(50)
    for b in range(50):
        winning = task.channel_group("right" if label[b] == 1 else "left")
        losing = task.channel_group("left" if label[b] == 1 else "right")
        assert x[:, b, losing].sum() == 0
        assert all(x[task.cue_window(k), b, winning].sum() > 0 for k in range(3))


# ---------------------------------------------------------------- store-recall

def test_store_recall_label_is_the_value_at_the_last_store_command() -> None:
    task = StoreRecall(n_periods=8, period=0.05, p_store=0.3, seed=7)
    x, label = task.sample(300)
    per = x.reshape(task.n_periods, task.period_steps, 300, task.n_in).sum(1)      # [P, B, n_in]

    def active(group: str) -> torch.Tensor:
        return per[:, :, task.channel_group(group)].sum(-1) > 0                   # [P, B]

    store, recall, v0, v1 = active("store"), active("recall"), active("value0"), active("value1")
    assert torch.all(store[0]) and not store[-1].any()
    assert torch.all(recall[-1]) and not recall[:-1].any()
    assert torch.all(v0[:-1] != v1[:-1]) and not (v0[-1] | v1[-1]).any()
    for b in range(300):
        last = int(torch.nonzero(store[:, b]).max())
        assert int(label[b]) == int(v1[last, b])
    assert 0.4 < float(label.float().mean()) < 0.6
    # more than one store command happens, so the task is not "remember period 0"
    assert int((store.sum(0) > 1).sum()) > 100


def test_store_recall_loss_scores_only_the_recall_period() -> None:
    task = SMALL["store-recall"]()
    _, y = task.sample(4)
    outputs = torch.randn(task.n_steps, 4, 2, generator=torch.Generator().manual_seed(1))
    changed = outputs.clone()
    changed[:task.n_steps - task.period_steps, :, 0] += 5.0
    assert torch.equal(task.loss(outputs, y), task.loss(changed, y))
    changed[-1, :, 0] += 5.0
    assert not torch.equal(task.loss(outputs, y), task.loss(changed, y))


# ---------------------------------------------------------------- pattern generation

def test_pattern_target_is_a_sum_of_four_sinusoids() -> None:
    task = PatternGeneration(n_out=3, seed=8)
    x, y = task.sample(2)
    assert task.n_steps == 1000 and x.shape == (1000, 2, 100)
    t = torch.arange(1000, dtype=torch.float64) * 1e-3
    basis = torch.cat([torch.stack([torch.sin(2 * math.pi * f * t), torch.cos(2 * math.pi * f * t)], 1)
                       for f in (1.0, 2.0, 3.0, 5.0)], 1)                           # [T, 8]
    for o in range(3):
        target = y[:, 0, o].double()
        coef = torch.linalg.lstsq(basis, target[:, None]).solution[:, 0]
        assert torch.allclose(basis @ coef, target, atol=1e-5)
        amplitudes = coef.view(4, 2).norm(dim=1)
        assert torch.all((amplitudes >= 0.5 - 1e-5) & (amplitudes <= 2.0 + 1e-5)), amplitudes
    # one second holds whole cycles: the spectrum has power at 1, 2, 3 and 5 Hz only
    power = torch.fft.rfft(y[:, 0, 0].double()).abs()
    assert set(torch.nonzero(power > 1e-3 * power.max()).flatten().tolist()) == {1, 2, 3, 5}
    assert not torch.allclose(y[:, 0, 0], y[:, 0, 1])


def test_pattern_input_is_frozen_poisson_noise() -> None:
    task = PatternGeneration(seed=9)
    (x1, y1), (x2, y2) = _two_batches(task, 3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 0], x1[:, 2])
    assert set(x1.unique().tolist()) == {0.0, 1.0}
    assert abs(float(x1[:, 0].mean()) - 0.05) < 5 * math.sqrt(0.05 * 0.95 / 100_000)


# ---------------------------------------------------------------- delayed response

def test_delayed_response_target_follows_cue_and_go_from_the_input() -> None:
    task = DelayedResponse(seed=10)
    x, y = task.sample(200)
    t = torch.arange(task.n_steps, dtype=torch.float32)
    delays = []
    for b in range(200):
        cue_a, cue_b, go = x[:, b, 0], x[:, b, 1], x[:, b, 2]
        assert (cue_a.sum() > 0) != (cue_b.sum() > 0)
        cue = cue_a if cue_a.sum() > 0 else cue_b
        on = torch.nonzero(cue).flatten()
        assert on.tolist() == list(range(10, 20))
        go_on = torch.nonzero(go).flatten()
        assert len(go_on) == 10 and torch.all(go_on.diff() == 1)
        delays.append(int(go_on[0]) - 20)
        sign = 1.0 if cue_a.sum() > 0 else -1.0
        expected = sign * torch.exp(-(t - go_on[0] - 30) ** 2 / (2 * 5.0 ** 2))
        assert torch.allclose(y[:, b, 0], expected, atol=1e-6)
    assert min(delays) >= 20 and max(delays) <= 100 and len(set(delays)) > 30
    assert 70 < int((x[:, :, 0].sum(0) > 0).sum()) < 130


# ---------------------------------------------------------------- add task

@pytest.mark.parametrize("t1, t2", [(5, 9), (2, 3)])
def test_add_task_target_recomputed_from_the_bits(t1: int, t2: int) -> None:
    task = AddTask(n_steps=50, t1=t1, t2=t2, seed=11)
    x, y = task.sample(7)
    bits = x[:, :, 0].numpy()
    assert set(np.unique(bits)) <= {0.0, 1.0}
    for b in range(7):
        for t in range(50):
            lag1 = bits[t - t1, b] if t >= t1 else 0.0
            lag2 = bits[t - t2, b] if t >= t2 else 0.0
            assert y[t, b, 0].item() == pytest.approx(0.5 + 0.5 * lag1 - 0.25 * lag2)


def test_add_task_one_hot_and_bit_balance() -> None:
    task = AddTask(n_steps=400, one_hot=True, seed=12)
    assert task.n_in == task.n_out == 2
    x, y = task.sample(50)
    assert torch.equal(x[..., 1], 1 - x[..., 0])
    assert torch.allclose(y[..., 1], 1 - y[..., 0])
    assert abs(float(x[..., 0].mean()) - 0.5) < 5 * math.sqrt(0.25 / x[..., 0].numel())
    plain_x, plain_y = AddTask(n_steps=400, seed=12).sample(50)
    assert torch.equal(plain_x[..., 0], x[..., 0]) and torch.equal(plain_y[..., 0], y[..., 0])


# ---------------------------------------------------------------- randman

def _manifold_reference(params: np.ndarray, alpha: float, xi: np.ndarray) -> np.ndarray:
    """Zenke & Vogels' f_u(ξ) written out as plain loops, for one manifold ``[U, D, 3, F]``."""
    n_units, dim, _, n_freq = params.shape
    out = np.ones(n_units)
    for u in range(n_units):
        for d in range(dim):
            series = 0.0
            for i in range(n_freq):
                a, f, phi = params[u, d, :, i]
                series += a * (1.0 / (i + 1) ** alpha) * math.sin(2 * math.pi * (i * xi[d] * f + phi))
            out[u] *= series
    return out


def test_randman_embedding_matches_the_formula() -> None:
    task = Randman(n_classes=2, n_in=5, dim_manifold=2, n_spikes=2, alpha=1.5, n_reference=50, seed=13)
    assert task.f_cutoff == math.ceil(1e-3 ** (-1 / 1.5))
    coords = torch.rand(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    got = task.embed(coords, labels)
    assert got.shape == (4, 2, 5)
    params = task.params.numpy()
    assert np.all(params[..., 0, 0] == 0)
    for b in range(4):
        for m in range(2):
            expected = _manifold_reference(params[labels[b], m], 1.5, coords[b].numpy())
            np.testing.assert_allclose(got[b, m].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_randman_every_unit_fires_once_inside_the_spike_window() -> None:
    task = Randman(n_classes=4, n_in=30, n_steps=50, step_frac=0.6, seed=14)
    x, labels = task.sample(300)
    assert task.spike_steps == 30 and task.loss.window == 20
    assert torch.all(x.sum(0) == 1)
    assert x[30:].sum() == 0
    counts = torch.bincount(labels, minlength=4).float()
    assert torch.all((counts - 75).abs() < 5 * math.sqrt(300 * 0.25 * 0.75))
    two = Randman(n_classes=2, n_in=10, n_spikes=3, n_steps=40, seed=14).sample(20)[0]
    assert torch.all(two.sum(0) == 3)


def test_randman_is_smooth_and_its_classes_are_separable_by_spike_timing() -> None:
    task = Randman(n_classes=2, n_in=20, n_steps=100, step_frac=1.0, window=10, seed=15)
    gen = torch.Generator().manual_seed(1)
    coords = torch.rand(400, 1, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (400,), generator=gen)
    times = task.spike_times(coords, labels)[:, 0]                          # [B, U]
    nearby = task.spike_times(coords + 1e-3 * (coords < 0.5) - 1e-3 * (coords >= 0.5), labels)[:, 0]
    assert (nearby - times).abs().mean() < 0.1 * (times[:200] - times[200:]).abs().mean()
    # the raster holds the same times, and one nearest neighbour in spike-time space classifies
    x = task.encode(coords, labels)
    assert torch.equal(x.argmax(0).double(), times)
    train, test = times[:300], times[300:]
    nearest = torch.cdist(test, train).argmin(1)
    accuracy = float((labels[:300][nearest] == labels[300:]).float().mean())
    assert accuracy > 0.9, accuracy


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("build, error, match", [
    (lambda: EvidenceAccumulation(n_cues=4), ValueError, "n_cues must be odd"),
    (lambda: EvidenceAccumulation(n_cues=0), ValueError, "n_cues"),
    (lambda: EvidenceAccumulation(p_minority=0.7), ValueError, "p_minority"),
    (lambda: EvidenceAccumulation(rate=2000.0), ValueError, "rate · dt"),
    (lambda: EvidenceAccumulation(delay=0.0005), ValueError, "whole multiple of dt"),
    (lambda: EvidenceAccumulation(delay=-0.1), ValueError, "delay"),
    (lambda: EvidenceAccumulation(cue_duration=0.0), ValueError, "cue_duration"),
    (lambda: EvidenceAccumulation(seed=1.5), TypeError, "seed"),
    (lambda: StoreRecall(n_periods=1), ValueError, "n_periods"),
    (lambda: StoreRecall(p_store=1.5), ValueError, "p_store"),
    (lambda: StoreRecall(period="long"), TypeError, "period"),
    (lambda: PatternGeneration(frequencies=()), TypeError, "frequencies"),
    (lambda: PatternGeneration(frequencies=(1.0, -2.0)), ValueError, r"frequencies\[1\]"),
    (lambda: PatternGeneration(frequencies=(600.0,)), ValueError, "Nyquist"),
    (lambda: PatternGeneration(amplitude_range=(2.0, 0.5)), ValueError, "amplitude_range"),
    (lambda: PatternGeneration(n_out=0), ValueError, "n_out"),
    (lambda: DelayedResponse(min_delay=0.1, max_delay=0.05), ValueError, "max_delay"),
    (lambda: DelayedResponse(response_width=0.0), ValueError, "response_width"),
    (lambda: AddTask(t1=-1), ValueError, "t1"),
    (lambda: AddTask(one_hot=1), TypeError, "one_hot"),
    (lambda: AddTask(n_steps=0), ValueError, "n_steps"),
    (lambda: Randman(n_classes=1), ValueError, "n_classes"),
    (lambda: Randman(step_frac=0.0), ValueError, "step_frac"),
    (lambda: Randman(window=101), ValueError, "window"),
    (lambda: Randman(prec=1.0), ValueError, "prec"),
    (lambda: Randman(alpha=-1.0), ValueError, "alpha"),
])
def test_bad_arguments_are_refused_with_a_named_error(build, error, match) -> None:
    with pytest.raises(error, match=match):
        build()


def test_bad_batch_size_and_bad_randman_points() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        AddTask().sample(0)
    task = SMALL["randman"]()
    with pytest.raises(ValueError, match="coords"):
        task.embed(torch.rand(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        task.embed(torch.rand(3, 1), torch.full((3,), 7))
    with pytest.raises(ValueError, match="coords must lie"):
        task.embed(torch.full((3, 1), 1.5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="labels"):
        task.embed(torch.rand(3, 1), torch.zeros(3))
    with pytest.raises(ValueError, match="group"):
        EvidenceAccumulation().channel_group("middle")


# ---------------------------------------------------------------- learnability (slow)

@pytest.mark.slow
def test_add_task_is_learned_past_the_one_lag_baseline() -> None:
    # constant output: MSE = Var(y) = 0.078125; knowing x(t−t1) only leaves Var(0.25·x) = 0.015625
    torch.manual_seed(0)
    task = AddTask(n_steps=60, seed=0)
    net = cl.models.RateRNN(n_in=1, n_rec=32, n_out=1, tau=1e-3, dt=1e-3, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    history = cl.train(net, cl.rules.BPTT(), task, steps=400, optimizer=opt, batch_size=32, progress=False)
    final = sum(row["loss"] for row in history[-10:]) / 10
    assert final < 0.015625, final


@pytest.mark.slow
def test_short_evidence_accumulation_is_learned_by_an_alif_network() -> None:
    torch.manual_seed(0)
    task = EvidenceAccumulation(n_cues=3, cue_duration=0.05, cue_pause=0.02, delay=0.05,
                                recall_duration=0.05, seed=0)
    net = cl.models.LIF(n_in=40, n_rec=50, n_out=2, adaptive_fraction=0.5, dt=1e-3, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    history = cl.train(net, cl.rules.SurrogateGradient(), task, steps=150, optimizer=opt,
                       batch_size=32, progress=False)
    final = sum(row["accuracy"] for row in history[-20:]) / 20
    assert final > 0.85, final
