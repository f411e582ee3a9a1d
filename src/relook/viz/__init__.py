"""Figures people would rather look at than read (matplotlib, Agg backend, PNG files): top-k grids,
curves, correspondences, attention grids, relevancy heatmaps."""
