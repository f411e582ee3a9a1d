"""Visualisations (matplotlib, Agg backend) that write PNG files."""
