"""Figures people would rather look at than read: top-k grids, curves, correspondences, heatmaps."""
