"""pair-classifier: train, compress, export, track and serve a text-pair classifier."""
