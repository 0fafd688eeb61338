"""Spike rasters, state and eligibility-trace plots, learning and alignment curves."""
from .plots import alignment, eligibility, learning_curve, learning_curves, lif_populations, raster, traces

__all__ = ["raster", "traces", "eligibility", "learning_curve", "learning_curves", "alignment",
           "lif_populations"]
