"""Evaluation: pure metric functions (``metrics``) and ground-truth builders (``protocols``)."""
