"""The engine: declared monitors, state continuation, precision, autograd and the single-step case."""
from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

import creditlab as cl

T, B, N_IN, N_REC, N_OUT = 40, 3, 6, 10, 2


def spiking_model(**extra: object) -> cl.models.LIF:
    return cl.models.LIF(N_IN, N_REC, N_OUT, adaptive_fraction=0.5, tau_a=50e-3, t_ref=2e-3, delays=3,
                         w_in_gain=3.0, seed=0, **extra)


def spike_input(dtype: torch.dtype = torch.float32, n_steps: int = T) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(n_steps, B, N_IN, generator=gen) < 0.2).to(dtype)


class InputCoincidence(cl.rules.Rule):
    """A recorder-only rule whose trace c_ji = z_j^t x_i^t is a [B, post, pre] synaptic variable."""

    trace_names = ("coincidence",)

    def begin(self, model: cl.models.Model, x: torch.Tensor, target: object, loss: object) -> None:
        self.coincidence = torch.zeros(x.shape[1], model.n_units, model.n_in, dtype=x.dtype)

    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        self.coincidence = local.z[:, :, None] * local.x[:, None, :]

    def traces(self) -> dict[str, torch.Tensor]:
        return {"coincidence": self.coincidence}


def test_full_records_have_shape_t_b_n_and_spikes_are_bool() -> None:
    model, x = spiking_model(), spike_input()
    with torch.no_grad():
        result = cl.Simulator(model, monitors=("spikes", "v", "a", "psi", "outputs")).run(x)
    record = result.record
    assert sorted(record.keys()) == ["a", "outputs", "psi", "spikes", "v"]
    for name in ("spikes", "v", "a", "psi"):
        assert record[name].shape == (T, B, N_REC), name
    assert record.spikes.dtype == torch.bool
    assert record.v.dtype == torch.float32
    assert record.spikes.any() and not record.spikes.all()
    assert torch.equal(record.outputs, result.outputs)
    torch.testing.assert_close(record.times, torch.arange(1, T + 1, dtype=torch.float64) * model.dt)
    # the recorded spikes are the threshold crossings of the recorded membrane (v − v_th − βa > 0)
    assert torch.equal(record.spikes & (record.v <= model.v_th), torch.zeros_like(record.spikes))


def test_monitors_record_only_the_requested_subset() -> None:
    model, x = spiking_model(), spike_input()
    with torch.no_grad():
        full = cl.Simulator(model, InputCoincidence(), monitors=("spikes", "v", "coincidence")).run(x).record
        part = cl.Simulator(model, InputCoincidence(), monitors=(
            cl.Monitor("v", neurons=[1, 4], batch=[0, 2]),
            cl.Monitor("spikes", neurons=[3]),
            cl.Monitor("coincidence", synapses=[(0, 1), (2, 0), (9, 5)], batch=[1]),
        )).run(x).record

    assert sorted(part.keys()) == ["coincidence", "spikes", "v"]
    assert part.v.shape == (T, 2, 2)
    assert torch.equal(part.v, full.v[:, [0, 2]][:, :, [1, 4]])
    assert part.spikes.shape == (T, B, 1) and part.spikes.dtype == torch.bool
    assert torch.equal(part.spikes, full.spikes[:, :, [3]])
    assert part.coincidence.shape == (T, 1, 3)
    expected = torch.stack([full.spikes[:, 1, post].float() * x[:, 1, pre]
                            for post, pre in [(0, 1), (2, 0), (9, 5)]], dim=-1)
    assert torch.equal(part.coincidence[:, 0], expected)
    assert "psi" not in part
    with pytest.raises(AttributeError, match="nothing recorded as 'psi'"):
        part.psi


def test_no_monitors_record_nothing() -> None:
    with torch.no_grad():
        record = cl.Simulator(spiking_model()).run(spike_input()).record
    assert record.keys() == []


@pytest.mark.parametrize("make_model", [spiking_model, lambda: cl.models.RateRNN(N_IN, N_REC, N_OUT, seed=0)],
                         ids=["lif_alif_delays_refractory", "rate_rnn"])
def test_continuing_with_state_equals_one_long_run(make_model) -> None:
    model, x = make_model(), spike_input()
    monitors = ("v",) if model.kind == "spiking" else ("h",)
    sim = cl.Simulator(model, monitors=monitors)
    with torch.no_grad():
        whole = sim.run(x)
        first = sim.run(x[:17])
        second = sim.run(x[17:], state=first.state)
    assert torch.equal(torch.cat([first.outputs, second.outputs]), whole.outputs)
    name = monitors[0]
    assert torch.equal(torch.cat([first.record[name], second.record[name]]), whole.record[name])
    for part, reference in zip(second.state, whole.state):
        if isinstance(reference, torch.Tensor):
            assert torch.equal(part, reference)
        elif isinstance(reference, tuple):   # the delay ring of past spikes
            assert all(torch.equal(p, r) for p, r in zip(part, reference))


def test_float64_run_and_gradient() -> None:
    model, x = spiking_model().double(), spike_input(torch.float64)
    target = torch.randn(T, B, N_OUT, dtype=torch.float64)
    result = cl.Simulator(model, cl.rules.SurrogateGradient(), monitors=("v", "spikes")).run(x, target=target)
    assert result.outputs.dtype == result.loss.dtype == result.record.v.dtype == torch.float64
    assert result.record.spikes.dtype == torch.bool
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float64, name
    assert not result.outputs.requires_grad, "with a rule attached the run's outputs come back detached"


def test_without_rule_the_autograd_graph_is_kept() -> None:
    model, x = spiking_model().double(), spike_input(torch.float64)
    target = torch.randn(T, B, N_OUT, dtype=torch.float64)
    result = cl.Simulator(model).run(x, target=target)
    assert result.outputs.requires_grad and result.loss.requires_grad
    result.loss.backward()
    exact = cl.rules.exact_gradient(model, x, target)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, exact[name], rtol=1e-12, atol=0)
    with torch.no_grad():
        assert not cl.Simulator(model).run(x, target=target).outputs.requires_grad


def test_mlp_runs_as_one_step() -> None:
    model = cl.models.MLP([N_IN, 8, 5, N_OUT], activation="tanh", seed=0).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(B, N_IN, generator=gen, dtype=torch.float64)
    target = torch.randn(B, N_OUT, generator=gen, dtype=torch.float64)

    result = cl.Simulator(model, cl.rules.BPTT(), monitors="outputs").run(x, target=target)

    h = x
    for index, layer in enumerate(model.layers):
        h = layer(h) if index == len(model.layers) - 1 else torch.tanh(layer(h))
    loss = ((h - target) ** 2).mean()
    assert result.outputs.shape == (B, N_OUT)
    assert result.record.outputs.shape == (1, B, N_OUT)
    torch.testing.assert_close(result.outputs, h.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(result.loss, loss.detach(), rtol=1e-14, atol=0)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (name, p), g in zip(model.named_parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-15, msg=name)


def test_stepped_run_without_graph_sees_every_write_to_the_recurrent_weights() -> None:
    """The masked W^rec is formed once per stepped run without a graph; writes must not go stale."""
    net = cl.models.LIF(3, 12, 2, seed=0)
    x = (torch.rand(30, 4, 3, generator=torch.Generator().manual_seed(1)) < 0.4).float()

    def run() -> torch.Tensor:
        with torch.no_grad():
            return cl.Simulator(net, fast=False).run(x).outputs

    def fresh() -> torch.Tensor:               # an identical model built from the current weights
        twin = cl.models.LIF(3, 12, 2, seed=0)
        twin.load_state_dict(net.state_dict())
        with torch.no_grad():
            return cl.Simulator(twin, fast=False).run(x).outputs

    first = run()
    with torch.no_grad():
        net.w_rec.mul_(-2.0)                   # in place, as an optimizer step or STDP writes
    changed = run()
    assert not torch.equal(changed, first)
    assert torch.equal(changed, fresh())
    net.w_rec.data.add_(0.3)                   # .data bypasses the version counter: seen at the next run
    with torch.no_grad():                      # and by every caller outside a run's steps
        assert torch.equal(net.recurrent_weight(), net.w_rec * net.rec_mask)
    assert torch.equal(run(), fresh())
    out = cl.Simulator(net, fast=False).run(x).outputs
    out.sum().backward()                       # under autograd the product is formed in the graph
    assert net.w_rec.grad is not None and net.w_rec.grad.abs().sum() > 0
