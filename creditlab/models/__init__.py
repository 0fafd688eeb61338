"""Networks the engine steps: spiking, rate and feed-forward."""
from .autoencoder import autoencoder
from .base import Model
from .convnet import ConvNet, ConvNetLocals
from .cuba import CUBA, CUBALocals, CUBAState
from .fused import LIFSequenceState, leaky_scan, lif_sequence
from .diehl_cook import DiehlCook, DiehlCookLocals, DiehlCookState
from .lif import LIF, LIFLocals, LIFState
from .liquid import LiquidLocals, LiquidState
from .mlp import MLP, MLPLocals
from .rate import RateLocals, RateRNN, RateState
from .reservoir import EchoState
from .srm import SRM, SRMLocals, SRMState, spike_raster
from .surrogate import SURROGATES, Surrogate

__all__ = ["Model", "LIF", "LIFState", "LIFLocals", "RateRNN", "RateState", "RateLocals",
           "MLP", "MLPLocals", "ConvNet", "ConvNetLocals", "autoencoder", "EchoState", "Surrogate", "SURROGATES",
           "SRM", "SRMState", "SRMLocals", "spike_raster",
           "DiehlCook", "DiehlCookState", "DiehlCookLocals", "LiquidState", "LiquidLocals",
           "CUBA", "CUBAState", "CUBALocals", "lif_sequence", "LIFSequenceState", "leaky_scan"]
