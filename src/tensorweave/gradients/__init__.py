"""Symbolic differentiation by extending the graph (``tw.gradients``) and per-family rules."""
