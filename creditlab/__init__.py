"""creditlab: a spiking and recurrent network simulator whose learning rules are plug-ins."""
from . import losses, models, rules
from .simulator import Monitor, Result, Simulator

__version__ = "0.1.0"
__all__ = ["Simulator", "Result", "Monitor", "models", "rules", "losses", "__version__"]
