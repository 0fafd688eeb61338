"""Temporal and classic tasks, generated and seeded; encoders; datasets."""
from .base import TASKS, Task

__all__ = ["TASKS", "Task"]
