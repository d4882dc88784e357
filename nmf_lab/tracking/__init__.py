"""Tracking: the only layer that imports MLflow (the store, runs, what they log, the model)."""
