"""Watching the served model: `pair-classifier drift` compares served traffic (the traffic log,
or any file of pairs) with the training data (docs/monitoring.md)."""
