"""Plots and widgets the notebooks share; one module per topic (curves, masks, tables, …)."""
