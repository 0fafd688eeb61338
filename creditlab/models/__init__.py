"""Networks the engine steps: spiking, rate and feed-forward."""
from .base import Model
from .lif import LIF, LIFLocals, LIFState
from .mlp import MLP, MLPLocals
from .rate import RateLocals, RateRNN, RateState
from .surrogate import SURROGATES, Surrogate

__all__ = ["Model", "LIF", "LIFState", "LIFLocals", "RateRNN", "RateState", "RateLocals",
           "MLP", "MLPLocals", "Surrogate", "SURROGATES"]
