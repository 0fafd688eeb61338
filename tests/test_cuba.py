"""CUBA network: event-driven delivery equals the dense reference; the network equals Brian2's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import creditlab as cl
from creditlab.models.cuba import CUBA
from creditlab.models.sparse import SparseConnectivity

#: a 500-neuron CUBA with the full network's fan-out (p · N = 80), which keeps it in the same regime
SMALL = dict(n_exc=400, n_inh=100, p=0.16)


def simulate(model: CUBA, n_steps: int, batch: int, monitors=("spikes", "v", "ge", "gi")) -> cl.simulator.engine.Result:
    x = torch.zeros(n_steps, batch, 0, dtype=model.dtype)
    with torch.no_grad():
        return cl.Simulator(model, monitors=monitors).run(x)


@pytest.mark.parametrize("dtype, n_steps, atol", [(torch.float64, 600, 1e-12), (torch.float32, 300, 2e-6)])
def test_event_delivery_equals_dense(dtype: torch.dtype, n_steps: int, atol: float) -> None:
    event = CUBA(**SMALL, delivery="event", seed=3, dtype=dtype)
    dense = CUBA(**SMALL, delivery="dense", seed=3, dtype=dtype)
    assert (event.delivery, dense.delivery) == ("event", "dense")
    assert event.synapses.dense_weight is None and dense.synapses.targets is None
    a, b = simulate(event, n_steps, batch=3), simulate(dense, n_steps, batch=3)
    spikes = a.record.spikes
    assert spikes.sum() > 200, "the network must be active for the comparison to mean anything"
    assert torch.equal(spikes, b.record.spikes)
    for name in ("v", "ge", "gi"):
        torch.testing.assert_close(a.record[name], b.record[name], rtol=0, atol=atol)
    torch.testing.assert_close(a.outputs, b.outputs)


def test_batch_holds_independent_trials() -> None:
    model = CUBA(**SMALL, seed=5, dtype=torch.float64)
    batched = simulate(model, 400, batch=4, monitors=("spikes",)).record.spikes
    single = simulate(model, 400, batch=1, monitors=("spikes",)).record.spikes
    # trial 0 of a batch is the single trial (same initial draw); the other trials start elsewhere
    assert torch.equal(batched[:, :1], single)
    assert not torch.equal(batched[:, 0], batched[:, 1])
    # a trial's spikes do not depend on its batch companions: rerun trial 2 alone from its start state
    start = model.init_state(4)
    alone = cl.models.CUBAState(start.vg[2:3].clone(), start.free_at[2:3].clone(), 0)
    x = torch.zeros(400, 1, 0, dtype=torch.float64)
    with torch.no_grad():
        rerun = cl.Simulator(model, monitors=("spikes",)).run(x, state=alone).record.spikes
    assert torch.equal(batched[:, 2:3], rerun)


def test_auto_delivery_follows_density() -> None:
    assert CUBA(n_exc=400, n_inh=100, p=0.02, seed=0).delivery == "event"
    assert CUBA(n_exc=80, n_inh=20, p=0.5, seed=0).delivery == "dense"


def test_refractory_neuron_is_held_and_noise_moves_free_neurons() -> None:
    model = CUBA(**SMALL, seed=1, dtype=torch.float64)
    state = model.init_state(1)
    held = cl.models.CUBAState(state.vg, torch.full_like(state.free_at, 10), 0)
    noise = torch.full((1, model.n_units), 1e-4, dtype=torch.float64)
    _, _, local = model.step(None, held, noise=noise)
    assert torch.all(local.v == model.v_reset) and not local.z.any()
    _, quiet, _ = model.step(None, state)
    _, pushed, local = model.step(None, state, noise=noise)
    stay = ~local.z & ~(quiet.vg[:, 2] == model.v_reset)
    torch.testing.assert_close(pushed.vg[:, 2][stay] - quiet.vg[:, 2][stay], noise[stay], rtol=0, atol=1e-15)


def spike_statistics(steps: np.ndarray, neurons: np.ndarray, n: int, duration: float) -> tuple[float, float]:
    """Mean rate (Hz) and mean CV of ISIs over neurons with at least three spikes."""
    cvs = []
    for k in range(n):
        isi = np.diff(np.sort(steps[neurons == k])).astype(float)
        if isi.size >= 2:
            cvs.append(isi.std() / isi.mean())
    return len(steps) / (n * duration), float(np.mean(cvs))


@pytest.mark.usefixtures("numpy_codegen")
def test_full_network_equals_brian2_numpy() -> None:
    """4000 neurons, 1 s: Brian2 (numpy target) on creditlab's synapses and initial v fires the same spikes."""
    b2_steps, b2_neurons = brian2_spikes()
    model = CUBA(seed=0, dtype=torch.float64)
    spikes = simulate(model, 10_000, batch=1, monitors=("spikes",)).record.spikes[:, 0]
    steps, neurons = (t.numpy() for t in spikes.nonzero(as_tuple=True))
    # Brian2's step n is creditlab's step n (both start at t = 0 with the state update)
    assert sorted(zip(steps, neurons)) == sorted(zip(b2_steps, b2_neurons))

    rate, cv = spike_statistics(steps, neurons, 4000, 1.0)
    b2_rate, b2_cv = spike_statistics(b2_steps, b2_neurons, 4000, 1.0)
    assert 2.0 < rate < 20.0 and 0.3 < cv < 1.2, "the CUBA regime: low-rate irregular firing"
    assert abs(rate - b2_rate) <= 0.02 * b2_rate and abs(cv - b2_cv) <= 0.02


def brian2_spikes() -> tuple[np.ndarray, np.ndarray]:
    """Step indices and neurons of Brian2's CUBA run on ``CUBA(seed=0)``'s synapses and initial v."""
    import brian2 as b2
    from brian2 import mV, ms, second, volt
    b2.start_scope()
    b2.defaultclock.dt = 0.1 * ms
    model = CUBA(seed=0, dtype=torch.float64)
    pre, post, _ = (t.numpy() for t in model.connections())
    v0 = model.init_state(1).v[0].numpy()
    ns = dict(taum=20 * ms, taue=5 * ms, taui=10 * ms, Vt=-50 * mV, Vr=-60 * mV, El=-49 * mV,
              we=60 * 0.27 / 10 * mV, wi=-20 * 4.5 / 10 * mV)
    group = b2.NeuronGroup(4000, """dv/dt = (ge+gi-(v-El))/taum : volt (unless refractory)
                                    dge/dt = -ge/taue : volt
                                    dgi/dt = -gi/taui : volt""",
                           threshold="v>Vt", reset="v = Vr", refractory=5 * ms, method="linear", namespace=ns)
    group.v = v0 * volt
    exc = pre < 3200
    ce = b2.Synapses(group, group, on_pre="ge += we", namespace=ns)
    ce.connect(i=pre[exc], j=post[exc])
    ci = b2.Synapses(group, group, on_pre="gi += wi", namespace=ns)
    ci.connect(i=pre[~exc], j=post[~exc])
    monitor = b2.SpikeMonitor(group)
    b2.run(1 * second)
    return np.round(np.asarray(monitor.t / second) / 1e-4).astype(np.int64), np.asarray(monitor.i)


@pytest.mark.parametrize("kwargs, name", [
    (dict(p=0.0), "p"), (dict(p=1.5), "p"), (dict(p=-0.1), "p"),
    (dict(w_exc=-1e-3), "w_exc"), (dict(w_inh=1e-3), "w_inh"),
    (dict(v_reset=-50e-3, v_th=-50e-3), "v_reset"), (dict(tau_m=0.0), "tau_m"),
    (dict(t_ref=-1e-3), "t_ref"), (dict(n_exc=0), "n_exc"), (dict(n_inh=-1), "n_inh"),
    (dict(delivery="sparse"), "delivery"), (dict(dt=float("nan")), "dt"), (dict(v_rest=float("inf")), "v_rest"),
])
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CUBA(**{**dict(n_exc=40, n_inh=10), **kwargs})


def test_bad_types_and_state_are_refused() -> None:
    with pytest.raises(TypeError, match="dtype"):
        CUBA(n_exc=40, n_inh=10, dtype=torch.int32)
    with pytest.raises(TypeError, match="w_inh"):
        CUBA(n_exc=40, n_inh=10, w_inh="strong")
    with pytest.raises(TypeError, match="autapses"):
        CUBA(n_exc=40, n_inh=10, autapses=1)
    model = CUBA(n_exc=40, n_inh=10, dtype=torch.float32)
    with pytest.raises(TypeError, match="dtype"):
        model.init_state(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="state.vg"):
        cl.Simulator(model).run(torch.zeros(5, 2, 0), state=model.init_state(3))


def test_sparse_connectivity_checks_its_synapses() -> None:
    pre, post, w = torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([1.0, -1.0])
    with pytest.raises(ValueError, match="post"):
        SparseConnectivity(pre, torch.tensor([2, 3]), w, 2, 3)
    with pytest.raises(ValueError, match="twice"):
        SparseConnectivity(torch.tensor([0, 0]), torch.tensor([1, 1]), w, 2, 3)
    with pytest.raises(TypeError, match="pre"):
        SparseConnectivity(pre.float(), post, w, 2, 3)
    with pytest.raises(ValueError, match="weight"):
        SparseConnectivity(pre, post, torch.ones(3), 2, 3)
    with pytest.raises(ValueError, match="delivery"):
        SparseConnectivity(pre, post, w, 2, 3, delivery="fast")
    # both paths add spikes @ W into the leading columns of a wider output
    spikes = torch.tensor([[True, True], [False, True]])
    expected = torch.tensor([[-1.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    for mode in ("event", "dense"):
        out = torch.zeros(2, 4)
        SparseConnectivity(pre, post, w, 2, 3, delivery=mode).deliver(out, spikes)
        assert torch.equal(out, expected)
