"""SpikeProp and the SRM network: spike times against a root finder, the gradient against
finite differences and autograd, XOR and Iris learning, and clear errors for bad input."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from scipy.optimize import brentq

import creditlab as cl
from creditlab.models.srm import spike_raster
from creditlab.rules import SpikeProp, exact_gradient, rule_estimate
from creditlab.tasks.spike_timing import IRIS_PATH, IRIS_SHA256, load_iris, population_times

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "spikeprop_xor.py"


def _example():
    spec = importlib.util.spec_from_file_location("spikeprop_xor", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _xor_net(seed: int = 0, dt: float = 5e-4) -> tuple[cl.models.SRM, cl.tasks.SpikeXOR]:
    task = cl.tasks.SpikeXOR(dt=dt)
    return cl.models.SRM([3, 5, 1], dt=dt, seed=seed), task


def _continuous_membrane(t: float, pre: list[float], weight: torch.Tensor, delays: tuple, tau: float) -> float:
    """x(t) = Σ_i Σ_k w_i^k ε(t − t_i − d^k), evaluated in plain Python."""
    total = 0.0
    for i, t_i in enumerate(pre):
        for k, d in enumerate(delays):
            s = t - t_i - d
            if s > 0:
                total += float(weight[i, k]) * (s / tau) * math.exp(1 - s / tau)
    return total


@pytest.mark.parametrize("dt, tolerance", [(1e-4, 1e-6), (5e-4, 2e-5)])
def test_spike_time_matches_root_of_continuous_membrane(float64, dt: float, tolerance: float) -> None:
    """The interpolated crossing lies within O(dt²) of the continuous crossing found by brentq."""
    net = cl.models.SRM([3, 2], dt=dt, seed=1)
    times = torch.tensor([[0.0, 6e-3, 2e-3]])
    x = spike_raster(times, n_steps=int(30e-3 / dt) + 1, dt=dt)
    result = cl.Simulator(net).run(x)
    fired = result.state.spike_times[1][0].detach()
    assert torch.isfinite(fired).all()
    for j in range(2):
        weight = net.weights[0][j].detach()
        def f(t): return _continuous_membrane(t, times[0].tolist(), weight, net.delays, net.tau) - net.threshold
        bracket = float(result.state.brackets[0][0, j])
        root = brentq(f, bracket, bracket + dt, xtol=1e-13)
        assert abs(float(fired[j]) - root) < tolerance
        # it is the first crossing: the membrane stays below threshold on a fine grid before it
        grid = torch.linspace(0.0, root - 1e-6, 400)
        assert max(f(float(t)) for t in grid) < 0


def test_gradient_matches_finite_differences_and_autograd(float64) -> None:
    net, task = _xor_net(seed=0)
    x, target = task.patterns(torch.float64)
    estimate = rule_estimate(net, SpikeProp(), x, target, task.loss)
    reference = exact_gradient(net, x, target, task.loss)
    base = cl.Simulator(net).run(x, target, task.loss)
    assert all(torch.isfinite(t).all() for t in base.state.spike_times)   # every neuron fires
    for name, param in net.named_parameters():
        torch.testing.assert_close(estimate[name], reference[name], rtol=1e-9, atol=1e-9)
        generator = torch.Generator().manual_seed(0)
        flat = param.detach().view(-1)
        for index in torch.randperm(flat.numel(), generator=generator)[:25].tolist():
            h = 1e-6
            values = []
            for sign in (1, -1):
                with torch.no_grad():
                    flat[index] += sign * h
                    run = cl.Simulator(net).run(x, target, task.loss)
                    flat[index] -= sign * h
                # the perturbation must not add, remove or re-bracket a spike
                for got, want in zip(run.state.brackets, base.state.brackets):
                    assert torch.equal(got, want)
                values.append(float(run.loss))
            numeric = (values[0] - values[1]) / (2 * h)
            analytic = float(estimate[name].view(-1)[index])
            assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(analytic)), (name, index, numeric, analytic)


def test_silent_output_gets_no_gradient_and_is_scored_at_window_end(float64) -> None:
    net, task = _xor_net(seed=0)
    with torch.no_grad():
        net.weights[1].mul_(-1.0)   # all-inhibitory output: it never fires
    x, target = task.patterns(torch.float64)
    result = cl.Simulator(net, SpikeProp()).run(x, target, task.loss)
    window_end = (x.shape[0] - 1) * task.dt
    torch.testing.assert_close(result.outputs[-1], torch.full_like(target, window_end))
    assert all(float(p.grad.abs().max()) == 0.0 for p in net.parameters())


def test_xor_learned_one_seed() -> None:
    epochs, net, metrics = _example().train_xor(seed=1, max_epochs=400)
    assert epochs is not None, metrics
    assert metrics["max_error_ms"] < 1.0 and metrics["sse_ms2"] < 1.0


@pytest.mark.slow
def test_xor_learned_ten_seeds() -> None:
    example = _example()
    epochs = [example.train_xor(seed=seed, max_epochs=1000)[0] for seed in range(10)]
    assert all(e is not None for e in epochs), epochs
    print(f"XOR epochs over 10 seeds: mean {sum(epochs) / 10:.0f}, min {min(epochs)}, max {max(epochs)}")


@pytest.mark.slow
def test_iris_test_accuracy_at_least_90_percent() -> None:
    train, test = _example().train_iris(seed=0)
    assert test >= 0.90, (train, test)


def test_iris_data_and_population_code() -> None:
    import hashlib
    assert hashlib.sha256(IRIS_PATH.read_bytes()).hexdigest() == IRIS_SHA256
    features, labels = load_iris()
    assert features.shape == (150, 4) and torch.bincount(labels).tolist() == [50, 50, 50]
    # Fisher's published means (cm), with rows 35 and 38 as in Fisher 1936
    torch.testing.assert_close(features.mean(0), torch.tensor([5.843333, 3.057333, 3.758, 1.199333],
                                                              dtype=torch.float64), atol=1e-6, rtol=0)
    # a value at a field's centre gives that field a spike at 0; far fields stay silent
    low, high = torch.tensor([0.0]), torch.tensor([10.0])
    centre_3 = low + (2 * 3 - 3) / 2 * (high - low) / 10   # field i = 3 of m = 12
    times = population_times(centre_3[None], low, high, 12, code_window=10e-3, dt=1e-4)
    assert float(times[0, 2]) == 0.0 and math.isinf(float(times[0, 11]))
    task = cl.tasks.IrisSpikes()
    (x_train, _), (_, y_test) = task.train_set(), task.test_set()
    assert x_train.shape == (task.n_steps, 75, 49) and torch.bincount(y_test).tolist() == [25, 25, 25]
    assert set(task.train_index.tolist()).isdisjoint(task.test_index.tolist())


def test_registries_and_monitors() -> None:
    assert cl.rules.RULES["spikeprop"] is SpikeProp
    assert cl.tasks.TASKS["spike-xor"] is cl.tasks.SpikeXOR and cl.tasks.TASKS["iris"] is cl.tasks.IrisSpikes
    net, task = _xor_net()
    x, target = task.patterns()
    result = cl.Simulator(net, SpikeProp(), monitors=("v", "spikes", "spike_times")).run(x, target, task.loss)
    assert result.record.v.shape == (x.shape[0], 4, 6)
    # each neuron fires at most once, in the step its recorded spike time falls in
    assert int(result.record.spikes.sum(0).max()) <= 1


def test_rule_and_model_mismatch_is_refused() -> None:
    for model in (cl.models.LIF(n_in=3, n_rec=5, n_out=1), cl.models.RateRNN(n_in=3, n_rec=5, n_out=1),
                  cl.models.MLP([3, 5, 1])):
        with pytest.raises(TypeError, match="SRM"):
            cl.Simulator(model, SpikeProp())
    net, _ = _xor_net()
    for rule in (cl.rules.BPTT(), cl.rules.SurrogateGradient(), cl.rules.EProp()):
        with pytest.raises(TypeError, match="spike-timing"):
            cl.Simulator(net, rule)


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="n_terminals"):
        cl.models.SRM([3, 5, 1], delays=[1e-3, 2e-3], n_terminals=16)
    with pytest.raises(ValueError, match="delays"):
        cl.models.SRM([3, 5, 1], delays=[1e-3, -2e-3])
    with pytest.raises(ValueError, match="delays"):
        cl.models.SRM([3, 5, 1], delays=[])
    with pytest.raises(ValueError, match="tau"):
        cl.models.SRM([3, 5, 1], tau=-7e-3)
    with pytest.raises(ValueError, match="threshold"):
        cl.models.SRM([3, 5, 1], threshold=0.0)
    with pytest.raises(ValueError, match="weight_range"):
        cl.models.SRM([3, 5, 1], weight_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="inhibitory"):
        cl.models.SRM([3, 5, 1], inhibitory=6)
    net, task = _xor_net()
    x, target = task.patterns()
    sim = cl.Simulator(net, SpikeProp())
    with pytest.raises(ValueError, match="x must be a spike raster"):
        sim.run(x * 0.5, target, task.loss)
    with pytest.raises(ValueError, match="at most one spike"):
        sim.run(torch.ones_like(x), target, task.loss)
    with pytest.raises(ValueError, match="n_in|axis 2"):
        sim.run(x[..., :2], target, task.loss)
    with pytest.raises(ValueError, match="target"):
        sim.run(x, target[:2], task.loss)
    with pytest.raises(ValueError, match="target"):
        sim.run(x, None, task.loss)
    with pytest.raises(ValueError, match="times must lie"):
        spike_raster(torch.tensor([[0.5]]), n_steps=10, dt=1e-3)
    with pytest.raises(ValueError, match="early"):
        cl.tasks.FirstSpikeClassLoss(early=16e-3, late=12e-3)
