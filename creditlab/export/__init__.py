"""Export creditlab networks to other simulators (Brian2)."""
from .brian2 import Brian2Handles, to_brian2

__all__ = ["to_brian2", "Brian2Handles"]
