"""creditlab: a spiking and recurrent network simulator whose learning rules are plug-ins."""
from . import export, losses, models, native, rules, tasks
from .simulator import Monitor, Result, Simulator
from .training import train
from . import viz

__version__ = "0.1.0"
__all__ = ["Simulator", "Result", "Monitor", "export", "models", "native", "rules", "losses", "tasks", "train", "viz", "__version__"]
