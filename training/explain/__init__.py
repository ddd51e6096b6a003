"""Explanations of a model's predictions: exact explainer stages exported with a model (``linear.py``)."""
