"""Spike rasters, state and eligibility-trace plots, learning and alignment curves."""
from .inspect import interspike_intervals, isi_histogram, pca, psth, reservoir_pca, weight_history
from .plots import alignment, eligibility, learning_curve, learning_curves, lif_populations, raster, traces

__all__ = ["raster", "traces", "eligibility", "learning_curve", "learning_curves", "alignment",
           "lif_populations", "psth", "isi_histogram", "interspike_intervals", "weight_history", "pca",
           "reservoir_pca"]
