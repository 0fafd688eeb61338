"""creditlab's LIF/ALIF network against a Brian2 simulation of the same network.

creditlab's discrete dynamics (creditlab/models/lif.py), step t → t+1:

    v^{t+1} = α v^t + Σ_i W^rec_ji z_i^{t-d_ji} + Σ_i W^in_ji x_i^{t+1} − v_th z^t
    a^{t+1} = ρ a^t + z^t
    z^{t+1} = H(v^{t+1} − v_th − β_j a^{t+1})      (0 while refractory)

The reset (−v_th z^t) and the adaptation jump (+z^t) enter *after* the next
decay, and recurrent spikes reach their target one step (plus d_ji) later.
Brian2's default schedule (groups → thresholds → synapses → resets) would
decay the reset and apply synaptic input after the threshold, so the Brian2
network below runs on the schedule

    groups → resets → synapses → thresholds

Within one Brian2 time step the state updater first decays v and a exactly
(``method="exact"``: v ← e^{−dt/τ_m} v, a ← e^{−dt/τ_a} a); the resetter then
applies ``v -= v_th; a += 1`` to the neurons that spiked in the previous
step (the spike space still holds them, since thresholds have not run yet);
the synaptic pathways push those same spikes into their queues and deliver
whatever is due now (``v_post += w``); only then is the threshold
``v > v_th + β_j a`` tested.  That is the creditlab update term by term.

Mapping of times and constants:

- Brian2 step n+1 computes creditlab step index n (Brian2 step 0 is an
  empty first step: the state is zero and no spike is pending), so the
  input x^{n} is emitted by the SpikeGeneratorGroup at time n·dt, picked up
  by the input synapses (delay 0) in step n+1, and Brian2 runs T+1 steps.
- A recurrent synapse with creditlab delay d has Brian2 ``delay = d·dt``:
  a spike thresholded in step s is pushed in step s+1 and delivered d steps
  after that, i.e. it reaches v^{s+1+d}, as z^{t-d} in v^{t+1}.
- creditlab's ``t_ref`` follows Bellec et al.'s LSNN and Brian2: a neuron
  that spikes at step s may spike again at step s + n_ref
  (n_ref = round(t_ref/dt)), so Brian2 ``refractory = n_ref·dt``.  In both,
  v keeps integrating while refractory (no ``(unless refractory)`` flag).
- No autapses (creditlab masks W^rec's diagonal).
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

import creditlab as cl

b2 = pytest.importorskip("brian2")

# Brian2's equation parser calls pyparsing names that newer pyparsing deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated")

N_IN, N_REC, N_STEPS, INPUT_RATE = 20, 30, 300, 0.05

NETWORKS = {
    "lif": dict(),
    "alif": dict(adaptive_fraction=0.5, tau_a=60e-3, beta=0.5),
    "delays": dict(delays=5),
    "refractory": dict(t_ref=3e-3),
    "alif_delays_refractory": dict(adaptive_fraction=0.4, tau_a=100e-3, beta=0.3, delays=3, t_ref=2e-3),
}


def creditlab_run(model: cl.models.LIF, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Spikes [T, N] (bool) and membrane [T, N] of creditlab's LIF for one input sequence."""
    with torch.no_grad():
        result = cl.Simulator(model, None, monitors=("spikes", "v")).run(x)
    return result.record.spikes[:, 0].numpy(), result.record.v[:, 0].numpy()


def brian2_run(model: cl.models.LIF, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The same network simulated by Brian2: spikes [T, N] (bool) and membrane [T, N]."""
    n_steps, n = x.shape[0], model.n_rec
    dt = model.dt * b2.second
    b2.start_scope()
    neurons = b2.NeuronGroup(
        n, "dv/dt = -v / tau_m : 1\nda/dt = -a / tau_a : 1\nbeta_j : 1 (constant)",
        threshold="v > v_th + beta_j * a", reset="v -= v_th\na += 1",
        refractory=model.n_refractory * dt, method="exact", dt=dt,
        namespace=dict(tau_m=model.tau_m * b2.second, tau_a=model.tau_a * b2.second, v_th=model.v_th))
    neurons.beta_j = model.beta_vec.numpy()

    steps, channels = np.nonzero(x[:, 0].numpy())
    inputs = b2.SpikeGeneratorGroup(model.n_in, channels, steps * dt, dt=dt)
    w_in = model.w_in.detach().numpy()                          # [post, pre]
    post_in, pre_in = np.nonzero(np.ones_like(w_in))
    input_synapses = b2.Synapses(inputs, neurons, "w : 1 (constant)", on_pre="v_post += w", dt=dt)
    input_synapses.connect(i=pre_in, j=post_in)
    input_synapses.w = w_in[post_in, pre_in]

    w_rec = model.recurrent_weight().detach().numpy()           # [post, pre], zero diagonal
    post, pre = np.nonzero(1 - np.eye(n))
    delays = model.delays.numpy() if model.delays is not None else np.zeros((n, n), dtype=int)
    recurrent = b2.Synapses(neurons, neurons, "w : 1 (constant)", on_pre="v_post += w", dt=dt)
    recurrent.connect(i=pre, j=post)
    recurrent.w = w_rec[post, pre]
    recurrent.delay = delays[post, pre] * dt

    spikes = b2.SpikeMonitor(neurons)
    membrane = b2.StateMonitor(neurons, "v", record=True, when="end", dt=dt)
    net = b2.Network(neurons, inputs, input_synapses, recurrent, spikes, membrane)
    net.schedule = ["start", "groups", "resets", "synapses", "thresholds", "end"]
    net.run((n_steps + 1) * dt)

    z = np.zeros((n_steps, n), dtype=bool)
    spike_steps = np.round(np.asarray(spikes.t / dt)).astype(int) - 1
    z[spike_steps, np.asarray(spikes.i)] = True
    return z, np.asarray(membrane.v)[:, 1:].T


def random_network(name: str, seed: int) -> tuple[cl.models.LIF, torch.Tensor]:
    """A float64 network and a Poisson input spike train driving it at a moderate rate."""
    model = cl.models.LIF(N_IN, N_REC, 2, seed=seed, w_in_gain=3.0, **NETWORKS[name]).double()
    gen = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(N_STEPS, 1, N_IN, generator=gen, dtype=torch.float64) < INPUT_RATE).double()
    return model, x


@pytest.mark.usefixtures("numpy_codegen")
@pytest.mark.parametrize("name, seed", [(name, seed) for seed, name in enumerate(NETWORKS)]
                         + [("alif_delays_refractory", 7)])
def test_identical_spike_trains(name: str, seed: int) -> None:
    model, x = random_network(name, seed)
    z_ours, v_ours = creditlab_run(model, x)
    z_brian, v_brian = brian2_run(model, x)

    rate = z_ours.mean()
    assert 0.02 < rate < 0.3, f"drive gives an uninformative firing rate {rate:.3f} spikes/step"
    mismatches = np.argwhere(z_ours != z_brian)
    assert mismatches.size == 0, f"spike trains differ at (step, neuron) {mismatches[:5].tolist()}"
    # Only the order of floating-point sums differs between the two simulators.
    np.testing.assert_allclose(v_ours, v_brian, rtol=0, atol=1e-10)


@pytest.mark.usefixtures("numpy_codegen")
def test_comparison_exercises_refractoriness_and_delays() -> None:
    """The constraints matter: a one-step-shorter refractory period or longer delays break agreement."""
    model, x = random_network("alif_delays_refractory", seed=0)
    z_ours, _ = creditlab_run(model, x)
    inter_spike = np.concatenate([np.diff(np.flatnonzero(z_ours[:, j])) for j in range(N_REC)])
    assert inter_spike.min() == model.n_refractory, "refractoriness never limited the firing"

    shorter = cl.models.LIF(N_IN, N_REC, 2, seed=0, w_in_gain=3.0,
                            **{**NETWORKS["alif_delays_refractory"], "t_ref": 1e-3}).double()
    shorter.load_state_dict(model.state_dict())
    assert (brian2_run(shorter, x)[0] != z_ours).any()

    longer = cl.models.LIF(N_IN, N_REC, 2, seed=0, w_in_gain=3.0, **NETWORKS["alif_delays_refractory"]).double()
    longer.load_state_dict(model.state_dict())
    longer.delays += 1
    assert (brian2_run(longer, x)[0] != z_ours).any()
