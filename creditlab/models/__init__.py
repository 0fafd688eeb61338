"""Networks the engine steps: spiking, rate and feed-forward."""
from .autoencoder import autoencoder
from .base import Model
from .convnet import ConvNet, ConvNetLocals
from .lif import LIF, LIFLocals, LIFState
from .mlp import MLP, MLPLocals
from .rate import RateLocals, RateRNN, RateState
from .reservoir import EchoState
from .surrogate import SURROGATES, Surrogate

__all__ = ["Model", "LIF", "LIFState", "LIFLocals", "RateRNN", "RateState", "RateLocals",
           "MLP", "MLPLocals", "ConvNet", "ConvNetLocals", "autoencoder", "EchoState", "Surrogate", "SURROGATES"]
