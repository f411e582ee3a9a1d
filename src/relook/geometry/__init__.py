"""Multi-view geometry: epipolar geometry on feature grids and robust (pseudo ground-truth) estimation."""
