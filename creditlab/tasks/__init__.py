"""Temporal and classic tasks, generated and seeded; encoders; datasets."""
from . import datasets, encoders, timeseries
from .base import TASKS, Task
from .classic import TwoSpiral, ZipserAndersen
from .dnms import DelayedNonMatch
from .randman import Randman
from .spike_patterns import SpikePatterns
from .spike_timing import FirstSpikeClassLoss, IrisSpikes, SpikeTimeLoss, SpikeXOR, load_iris
from .temporal import AddTask, DelayedResponse, EvidenceAccumulation, PatternGeneration, StoreRecall

__all__ = ["TASKS", "Task", "datasets", "encoders", "timeseries", "TwoSpiral", "ZipserAndersen",
           "EvidenceAccumulation", "StoreRecall", "PatternGeneration",
           "DelayedResponse", "AddTask", "Randman", "DelayedNonMatch",
           "SpikeXOR", "IrisSpikes", "SpikeTimeLoss", "FirstSpikeClassLoss", "load_iris", "SpikePatterns"]
