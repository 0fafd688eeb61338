"""Clock, run loop, delayed spike delivery and declared monitors."""
from .engine import Result, Simulator
from .monitors import Monitor, Record

__all__ = ["Simulator", "Result", "Monitor", "Record"]
