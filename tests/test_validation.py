"""Bad input is answered at the API boundary by a ValueError/TypeError naming the argument."""
from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

import creditlab as cl

T, B, N_IN, N_REC, N_OUT = 10, 2, 3, 5, 2


def lif() -> cl.models.LIF:
    return cl.models.LIF(N_IN, N_REC, N_OUT, seed=0)


def good_x() -> torch.Tensor:
    return torch.zeros(T, B, N_IN)


def run_lif(x: torch.Tensor, **kwargs: object) -> cl.Result:
    return cl.Simulator(lif()).run(x, **kwargs)


CASES: dict[str, tuple[Callable[[], object], type[Exception], tuple[str, ...]]] = {
    # sim.run inputs
    "x_rank": (lambda: run_lif(torch.zeros(T, N_IN)), ValueError, ("x", "rank 3")),
    "x_size": (lambda: run_lif(torch.zeros(T, B, N_IN + 1)), ValueError, ("x", "size 3")),
    "x_not_tensor": (lambda: run_lif([[0.0] * N_IN]), TypeError, ("x", "torch.Tensor")),
    "x_integer": (lambda: run_lif(torch.zeros(T, B, N_IN, dtype=torch.long)), TypeError, ("x", "floating")),
    "x_empty": (lambda: run_lif(torch.zeros(0, B, N_IN)), ValueError, ("x", "at least one time step")),
    "x_nan": (lambda: run_lif(torch.full((T, B, N_IN), math.nan)), ValueError, ("x", "NaN")),
    "x_inf": (lambda: run_lif(torch.full((T, B, N_IN), math.inf)), ValueError, ("x", "Inf")),
    "x_dtype": (lambda: run_lif(good_x().double()), TypeError, ("x", "dtype")),
    "mlp_x_size": (lambda: cl.Simulator(cl.models.MLP([N_IN, 4, N_OUT])).run(torch.zeros(B, N_IN + 1)),
                   ValueError, ("x", "size 3")),
    "target_shape": (lambda: run_lif(good_x(), target=torch.zeros(T, B, N_OUT + 1)), ValueError,
                     ("target", "size 2")),
    "target_rank": (lambda: run_lif(good_x(), target=torch.zeros(B, N_OUT)), ValueError, ("target", "rank 3")),
    "target_nan": (lambda: run_lif(good_x(), target=torch.full((T, B, N_OUT), math.nan)), ValueError,
                   ("target", "NaN")),
    "target_labels": (lambda: run_lif(good_x(), target=torch.zeros(B), loss=cl.losses.WindowCrossEntropy(3)),
                      TypeError, ("target", "integer class labels")),
    "loss_not_callable": (lambda: run_lif(good_x(), target=torch.zeros(T, B, N_OUT), loss=3), TypeError,
                          ("loss", "callable")),
    "state_type": (lambda: run_lif(good_x(), state=(0, 0)), TypeError, ("state", "LIFState")),
    "state_batch": (lambda: run_lif(good_x(), state=lif().init_state(B + 1)), ValueError,
                    ("state.v", "batch size")),
    "bptt_without_target": (lambda: cl.Simulator(lif(), cl.rules.BPTT()).run(good_x()), ValueError, ("target",)),
    # model constructors
    "dt_zero": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, dt=0.0), ValueError, ("dt", "> 0")),
    "dt_negative": (lambda: cl.models.RateRNN(N_IN, N_REC, N_OUT, dt=-1e-3), ValueError, ("dt", "> 0")),
    "dt_above_tau": (lambda: cl.models.RateRNN(N_IN, N_REC, N_OUT, tau=1e-3, dt=2e-3), ValueError,
                     ("dt", "tau")),
    "tau_m": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, tau_m=0.0), ValueError, ("tau_m", "> 0")),
    "tau_a": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, tau_a=-1.0), ValueError, ("tau_a", "> 0")),
    "tau_out": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, tau_out=math.inf), ValueError, ("tau_out",)),
    "tau": (lambda: cl.models.RateRNN(N_IN, N_REC, N_OUT, tau=0.0), ValueError, ("tau", "> 0")),
    "tau_type": (lambda: cl.models.RateRNN(N_IN, N_REC, N_OUT, tau="30ms"), TypeError, ("tau", "number")),
    "delay_negative_int": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, delays=-1), ValueError, ("delays", ">= 0")),
    "delay_negative_entry": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT,
                                                   delays=-torch.ones(N_REC, N_REC, dtype=torch.long)),
                             ValueError, ("delays", ">= 0")),
    "delay_float": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, delays=torch.ones(N_REC, N_REC)), TypeError,
                    ("delays", "integer")),
    "delay_shape": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, delays=torch.ones(N_REC - 1, N_REC, dtype=torch.long)),
                    ValueError, ("delays", "size 5")),
    "adaptive_fraction": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, adaptive_fraction=1.5), ValueError,
                          ("adaptive_fraction", "[0.0, 1.0]")),
    "surrogate_name": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, surrogate="step"), ValueError,
                       ("surrogate", "fast_sigmoid")),
    "smooth_refractory": (lambda: cl.models.LIF(N_IN, N_REC, N_OUT, surrogate="smooth", t_ref=2e-3), ValueError,
                          ("t_ref", "smooth")),
    "n_rec": (lambda: cl.models.LIF(N_IN, 0, N_OUT), ValueError, ("n_rec", ">= 1")),
    "activation": (lambda: cl.models.RateRNN(N_IN, N_REC, N_OUT, activation="sigmoid"), ValueError,
                   ("activation", "tanh")),
    # simulator construction, rules, monitors
    "model_type": (lambda: cl.Simulator(torch.nn.Linear(2, 2)), TypeError, ("model", "cl.models")),
    "rule_type": (lambda: cl.Simulator(lif(), rule="bptt"), TypeError, ("rule", "cl.rules")),
    "surrogate_on_rate": (lambda: cl.Simulator(cl.models.RateRNN(N_IN, N_REC, N_OUT), cl.rules.SurrogateGradient()),
                          TypeError, ("SurrogateGradient", "RateRNN", "spiking", "BPTT()")),
    "monitor_unknown": (lambda: cl.Simulator(lif(), monitors=("voltage",)).run(good_x()), ValueError,
                        ("monitor 'voltage'", "available", "spikes", "v")),
    "monitor_spikes_on_rate": (lambda: cl.Simulator(cl.models.RateRNN(N_IN, N_REC, N_OUT), monitors="spikes")
                               .run(good_x()), ValueError, ("monitor 'spikes'", "r")),
    "monitor_type": (lambda: cl.Simulator(lif(), monitors=(3,)), TypeError, ("monitors",)),
    "monitor_neurons_and_synapses": (lambda: cl.Monitor("v", neurons=[0], synapses=[(0, 0)]), ValueError,
                                     ("neurons=", "synapses=")),
    "monitor_synapses_on_neuron_variable": (lambda: cl.Simulator(lif(), monitors=cl.Monitor("v", synapses=[(0, 1)]))
                                            .run(good_x()), ValueError, ("synapses=", "[B, post, pre]")),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_named(case: tuple[Callable[[], object], type[Exception], tuple[str, ...]]) -> None:
    call, error, fragments = case
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from the message: {message}"
