"""Echo-state reservoir: ridge and RLS readouts, scaling, batching, series, bad input."""
import numpy as np
import pytest
import torch

from creditlab.models.reservoir import EchoState, gram_matrix
from creditlab.tasks.timeseries import mackey_glass, narma10, nrmse


def test_recurrent_matrix_has_requested_spectral_radius_and_density():
    res = EchoState(1, 200, spectral_radius=1.25, density=0.1, seed=3)
    w = res.w.detach().double()
    assert torch.linalg.eigvals(w).abs().max().item() == pytest.approx(1.25, rel=1e-4)
    assert (w != 0).float().mean().item() == pytest.approx(0.1, abs=0.02)


def test_ridge_readout_equals_independent_least_squares():
    torch.manual_seed(0)
    res = EchoState(2, 40, n_out=3, spectral_radius=0.8, leak=0.5, seed=1).double()
    x = torch.randn(120, 2, 2, dtype=torch.float64)
    y = torch.randn(120, 2, 3, dtype=torch.float64)
    res.fit(x, y, washout=20, ridge=1e-3)
    h, _ = res.states(x)
    design = np.concatenate([np.ones((100, 2, 1)), x[20:].numpy(), h[20:].numpy()], -1).reshape(200, -1)
    target = y[20:].numpy().reshape(200, 3)
    # Ridge as an augmented least-squares problem: [X; √β I] w = [Y; 0].
    aug_x = np.vstack([design, np.sqrt(1e-3) * np.eye(design.shape[1])])
    aug_y = np.vstack([target, np.zeros((design.shape[1], 3))])
    expected = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0].T
    np.testing.assert_allclose(res.w_out.detach().numpy(), expected, rtol=1e-6, atol=1e-8)


def test_rls_readout_converges_to_least_squares():
    torch.manual_seed(1)
    res = EchoState(1, 20, spectral_radius=0.9, seed=2).double()
    x = torch.randn(400, 1, 1, dtype=torch.float64)
    y = torch.roll(x, 2, 0) * 0.7
    ridge = EchoState(1, 20, spectral_radius=0.9, seed=2).double().fit(x, y, washout=10, ridge=1e-9)
    res.fit_online(x, y, washout=10, alpha=1e-6)
    pred_rls, _ = res.run(x)
    pred_ridge, _ = ridge.run(x)
    assert nrmse(pred_rls[10:], pred_ridge[10:]) < 1e-3


def test_batched_trials_equal_separate_runs():
    res = EchoState(1, 30, spectral_radius=0.9, leak=0.4, seed=4)
    x = torch.randn(50, 3, 1)
    h, _ = res.states(x)
    for b in range(3):
        hb, _ = res.states(x[:, b:b + 1])
        torch.testing.assert_close(hb[:, 0], h[:, b])


def test_engine_step_matches_state_collection():
    import creditlab as cl
    res = EchoState(1, 30, spectral_radius=0.9, leak=0.4, seed=5)
    x = torch.randn(40, 2, 1)
    record = cl.Simulator(res, monitors=("h",)).run(x).record
    h, _ = res.states(x)
    torch.testing.assert_close(record.h, h)


def test_mackey_glass_rk4_agrees_with_fine_euler():
    rk4 = mackey_glass(60, h=0.1).numpy()
    euler = np.empty(60)
    dt, lag = 0.001, 17000
    x = np.full(lag + 1 + 60000, 1.2)
    for i in range(lag, lag + 60000):
        x[i + 1] = x[i] + dt * (0.2 * x[i - lag] / (1 + x[i - lag] ** 10) - 0.1 * x[i])
    euler = x[lag + 1000::1000][:60]
    np.testing.assert_allclose(rk4, euler, atol=2e-3)


def test_mackey_glass_one_step_prediction_is_accurate():
    series = mackey_glass(2200).float()
    x, y = series[:-1].view(-1, 1, 1), series[1:].view(-1, 1, 1)
    res = EchoState(1, 300, spectral_radius=1.25, leak=0.3, seed=0).fit(x[:1500], y[:1500], washout=100)
    _, state = res.run(x[:1500])
    pred, _ = res.run(x[1500:], state)
    assert nrmse(pred, y[1500:]) < 0.01


def test_narma10_target_follows_its_recurrence():
    u, y = narma10(200, seed=3, batch_size=2)
    u, y = u[..., 0].numpy(), y[..., 0].numpy()
    for t in range(9, 199):
        expected = 0.3 * y[t] + 0.05 * y[t] * y[t - 9:t + 1].sum(0) + 1.5 * u[t - 9] * u[t] + 0.1
        np.testing.assert_allclose(y[t + 1], expected)
    assert (u >= 0).all() and (u <= 0.5).all()


def test_free_running_generation_continues_the_series():
    series = mackey_glass(2100).float()
    x, y = series[:-1].view(-1, 1, 1), series[1:].view(-1, 1, 1)
    res = EchoState(1, 300, spectral_radius=1.25, leak=0.3, seed=0).fit(x[:2000], y[:2000], washout=100, ridge=1e-7)
    _, state = res.states(x[:2000])
    free = res.generate(20, state, x[1999])
    assert nrmse(free[:, 0], y[1999:2019, 0]) < 0.01


@pytest.mark.parametrize("kwargs, word", [
    ({"spectral_radius": 0.0}, "spectral_radius"),
    ({"spectral_radius": -1.0}, "spectral_radius"),
    ({"density": 0.0}, "density"),
    ({"leak": 0.0}, "leak"),
    ({"leak": 1.5}, "leak"),
])
def test_bad_arguments_name_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        EchoState(1, 20, **kwargs)


def test_fit_rejects_bad_washout_and_shapes():
    res = EchoState(1, 10, seed=0)
    x = torch.randn(20, 1, 1)
    with pytest.raises(ValueError, match="washout"):
        res.fit(x, torch.randn(20, 1, 1), washout=20)
    with pytest.raises(ValueError, match="y"):
        res.fit(x, torch.randn(19, 1, 1))


def test_gram_matrix_is_the_symmetric_product_of_the_design() -> None:
    design = torch.rand(300, 41, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gram = gram_matrix(design)
    assert torch.equal(gram, gram.t())
    torch.testing.assert_close(gram, design.t() @ design, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gram_matrix(design.float()), design.float().t() @ design.float())
