"""The team's services on this machine: PostgreSQL, an S3-compatible store and the MLflow
tracking server, started and stopped together (``pair-classifier services up|down|status``).
No ML code here: only the ground floor (config, constants, errors, logs) is imported."""
