"""Delayed spike delivery through the LIF model's ring of past spike vectors.

A recurrent synapse i → j with delay d adds W_ji z_i^{t-d} to v_j^{t+1}: a
spike emitted at step s reaches its target at step s + 1 + d, d steps after
the plain one-step recurrence (d = 0).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import creditlab as cl

SPIKE_STEP, W_SYN = 2, 0.25


def two_neuron_chain(delay: int) -> cl.models.LIF:
    """Neuron 0 → neuron 1 with one synapse of the given delay; only neuron 0 gets input."""
    model = cl.models.LIF(2, 2, 1, delays=torch.tensor([[0, 0], [delay, 0]])).double()
    with torch.no_grad():
        model.w_in.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
        model.w_rec.copy_(torch.tensor([[0.0, 0.0], [W_SYN, 0.0]]))
    return model


@pytest.mark.parametrize("delay", [0, 1, 3, 7])
def test_spike_arrives_exactly_delay_steps_late(delay: int) -> None:
    model = two_neuron_chain(delay)
    x = torch.zeros(SPIKE_STEP + delay + 6, 1, 2, dtype=torch.float64)
    x[SPIKE_STEP, 0, 0] = 1.0                      # drives neuron 0 to v = 2 > v_th once
    with torch.no_grad():
        record = cl.Simulator(model, None, monitors=("spikes", "v")).run(x).record
    spikes, v1 = record.spikes[:, 0], record.v[:, 0, 1]

    assert spikes[:, 0].nonzero().flatten().tolist() == [SPIKE_STEP]
    assert not spikes[:, 1].any()
    arrival = SPIKE_STEP + 1 + delay               # the plain recurrent arrival is SPIKE_STEP + 1
    assert torch.equal(v1[:arrival], torch.zeros(arrival, dtype=torch.float64))
    expected_after = W_SYN * model.alpha ** torch.arange(len(v1) - arrival, dtype=torch.float64)
    torch.testing.assert_close(v1[arrival:], expected_after, rtol=1e-14, atol=0)


def test_zero_delays_equal_plain_recurrence() -> None:
    """delays = 0 everywhere gives the same outputs, spikes and gradients as no delays."""
    plain = cl.models.LIF(5, 12, 2, adaptive_fraction=0.5, w_in_gain=2.0, seed=4).double()
    zero = cl.models.LIF(5, 12, 2, adaptive_fraction=0.5, w_in_gain=2.0, seed=4,
                         delays=torch.zeros(12, 12, dtype=torch.long)).double()
    assert zero.max_delay == 0
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(60, 3, 5, generator=gen, dtype=torch.float64) < 0.3).double()
    target = torch.randn(60, 3, 2, generator=gen, dtype=torch.float64)

    results = [cl.Simulator(model, cl.rules.SurrogateGradient(), monitors="spikes").run(x, target=target)
               for model in (plain, zero)]
    assert results[0].record.spikes.any()
    assert torch.equal(results[0].outputs, results[1].outputs)
    assert torch.equal(results[0].record.spikes, results[1].record.spikes)
    for (name, p_plain), p_zero in zip(plain.named_parameters(), zero.parameters()):
        assert torch.equal(p_plain.grad, p_zero.grad), name


def reference_lif(model: cl.models.LIF, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The docstring's equations with the full spike history indexed directly (no ring buffer)."""
    n_steps, n = x.shape[0], model.n_rec
    w_in = model.w_in.detach().numpy()
    w_rec = model.recurrent_weight().detach().numpy()
    delays = model.delays.numpy()
    beta = model.beta_vec.numpy()
    post, pre = np.indices((n, n))
    z = np.zeros((n_steps + 1, n))      # z[0] = the initial state, z[t+1] = spikes of step t
    vs = np.zeros((n_steps, n))
    v, a, last_spike = np.zeros(n), np.zeros(n), np.full(n, -10 ** 9)
    for t in range(n_steps):
        source = t - delays                                   # index of z^{t-d} in z[·]
        delivered = np.where(source >= 0, z[np.clip(source, 0, None), pre], 0.0)
        v = model.alpha * v + (w_rec * delivered).sum(1) + w_in @ x[t] - model.v_th * z[t]
        a = model.rho * a + z[t]
        free = t - last_spike >= model.n_refractory
        z[t + 1] = ((v - model.v_th - beta * a > 0) & free).astype(float)
        last_spike = np.where(z[t + 1] > 0, t, last_spike)
        vs[t] = v
    return z[1:].astype(bool), vs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ring_buffer_matches_direct_history_indexing(seed: int) -> None:
    model = cl.models.LIF(8, 15, 1, adaptive_fraction=0.5, tau_a=50e-3, beta=0.4, t_ref=2e-3,
                          delays=6, w_in_gain=3.0, w_rec_gain=2.0, seed=seed).double()
    gen = torch.Generator().manual_seed(100 + seed)
    x = (torch.rand(200, 1, 8, generator=gen, dtype=torch.float64) < 0.1).double()
    with torch.no_grad():
        record = cl.Simulator(model, None, monitors=("spikes", "v")).run(x).record
    z_ref, v_ref = reference_lif(model, x[:, 0].numpy())

    assert 0.02 < z_ref.mean() < 0.4
    assert len(np.unique(model.delays.numpy())) == 7
    np.testing.assert_array_equal(record.spikes[:, 0].numpy(), z_ref)
    np.testing.assert_allclose(record.v[:, 0].numpy(), v_ref, rtol=0, atol=1e-12)
