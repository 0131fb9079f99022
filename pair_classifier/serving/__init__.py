"""Serving the registered model over HTTP: the request rules both servers apply (``requests``),
MLflow serving, the token-checking reverse proxy that exposes a server, and the ``serve`` commands.

Nothing here imports the training code (torch, Lightning): a server's environment needs only the
export chain's light dependencies.
"""
