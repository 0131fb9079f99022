"""Hyper-parameter search with Optuna, each trial a DVC experiment (`pair-classifier tune`).

Nothing here is a pipeline stage: the tuner drives `dvc exp run` from outside, so the pipeline
code knows nothing of Optuna and every trial is reproducible from its params alone.
"""
