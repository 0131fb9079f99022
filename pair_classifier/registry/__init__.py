"""The model registry: the served graph as an MLflow pyfunc, registered as a new version of the
model and promoted to ``champion`` only when it beats the current one (``register`` stage).
Only the export's torch-free predictor is imported: no training or model code."""
