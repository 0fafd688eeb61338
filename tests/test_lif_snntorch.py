"""creditlab's non-adaptive LIF against ``snntorch.Leaky``.

snntorch.Leaky with ``reset_mechanism="subtract"`` and ``reset_delay=True``
(its default) computes, for input current I[t]:

    reset[t] = H(U[t−1] − θ)                 (from the previous membrane, detached)
    U[t]     = β U[t−1] + I[t] − reset[t] θ
    S[t]     = H(U[t] − θ)

creditlab's LIF without adaptation (β_j = 0), refractoriness or recurrence:

    v^{t+1} = α v^t + W_in x^{t+1} − v_th z^t,   z^{t+1} = H(v^{t+1} − v_th)

Since z^t = H(v^t − v_th), reset[t] = z^t: both subtract the threshold one
step after the spike, undecayed.  So with β = α = exp(−dt/τ_m), θ = v_th,
I[t] = W_in x^{t+1} and U[−1] = 0, the membranes are equal and the spike
trains identical.  (``reset_delay=False`` would subtract in the spiking step
itself, which is a different neuron.)
"""
from __future__ import annotations

import math

import pytest
import torch

import creditlab as cl

snn = pytest.importorskip("snntorch")


def snntorch_run(current: torch.Tensor, beta: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membranes [T, B, N] of snntorch.Leaky driven by ``current`` [T, B, N]."""
    neuron = snn.Leaky(beta=torch.tensor(beta, dtype=current.dtype),
                       threshold=torch.tensor(threshold, dtype=current.dtype),
                       reset_mechanism="subtract", reset_delay=True)
    mem = torch.zeros_like(current[0])
    spikes, membranes = [], []
    for i_t in current:
        spk, mem = neuron(i_t, mem)
        spikes.append(spk.bool())
        membranes.append(mem)
    return torch.stack(spikes), torch.stack(membranes)


def creditlab_run(model: cl.models.LIF, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        result = cl.Simulator(model, None, monitors=("spikes", "v")).run(x)
    return result.record.spikes, result.record.v


@pytest.mark.parametrize("tau_m, v_th", [(20e-3, 1.0), (5e-3, 0.5), (50e-3, 2.0)])
def test_identity_input_matches_leaky(tau_m: float, v_th: float) -> None:
    """W_in = I: the neurons see exactly the current sequence snntorch sees."""
    n, dt = 16, 1e-3
    model = cl.models.LIF(n, n, 1, dt=dt, tau_m=tau_m, v_th=v_th, recurrent=False).double()
    with torch.no_grad():
        model.w_in.copy_(torch.eye(n, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    current = v_th * (0.15 + 0.6 * torch.rand(400, 3, n, generator=gen, dtype=torch.float64))

    z_ours, v_ours = creditlab_run(model, current)
    z_snn, v_snn = snntorch_run(current, math.exp(-dt / tau_m), v_th)

    assert 0.02 < z_ours.double().mean() < 0.5
    assert torch.equal(z_ours, z_snn)
    torch.testing.assert_close(v_ours, v_snn, rtol=0, atol=1e-12)


def test_feedforward_layer_matches_linear_plus_leaky() -> None:
    """A feed-forward LIF layer equals nn.Linear (no bias) followed by snntorch.Leaky."""
    n_in, n, dt, tau_m = 30, 12, 1e-3, 10e-3
    model = cl.models.LIF(n_in, n, 1, dt=dt, tau_m=tau_m, recurrent=False, w_in_gain=2.0, seed=3).double()
    linear = torch.nn.Linear(n_in, n, bias=False).double()
    with torch.no_grad():
        linear.weight.copy_(model.w_in)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(300, 4, n_in, generator=gen, dtype=torch.float64) < 0.2).double()

    z_ours, v_ours = creditlab_run(model, x)
    with torch.no_grad():
        z_snn, v_snn = snntorch_run(linear(x), math.exp(-dt / tau_m), model.v_th)

    assert 0.02 < z_ours.double().mean() < 0.5
    assert torch.equal(z_ours, z_snn)
    torch.testing.assert_close(v_ours, v_snn, rtol=0, atol=1e-12)
