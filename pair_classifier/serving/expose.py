"""`pair-classifier serve expose`: the one documented way to make a server reachable from
elsewhere, an nginx reverse proxy in front of it that refuses any request without the bearer
token (401) and any body over ``serving.max_body_bytes`` (413).

The servers themselves answer anyone who reaches them, so they bind loopback only; a tunnel
(ngrok, cloudflared) or a public bind points at this proxy, never at a server. The token comes
from the environment variable ``serving.token_env`` and is written only into the proxy's config
in a private temporary folder, removed when the proxy stops.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

from pair_classifier.serving.process import (
    ServingError,
    port_taken,
    require_free_port,
    run_foreground,
)
from pair_classifier.serving.settings import ServingConfig, is_loopback

logger = logging.getLogger(__name__)

NAME = "proxy (nginx)"
NGINX = "nginx"
NGINX_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")  # beyond PATH
CONFIG_FILE = "nginx.conf"
PRIVATE_FILE = 0o600  # the config holds the token
RUN_DIR_MODE = 0o711  # nginx's workers (another user when it runs as root) reach their temp dirs
# What a token may hold: URL-safe base64 and the few other characters of RFC 6750's b64token;
# nothing that could end the quoted string in nginx's config.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]+")
UPSTREAM_SCHEMES = ("http", "https")
WORKER_CONNECTIONS = 512
UPSTREAM_READ_TIMEOUT_S = 120
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's temp folders


def proxy_token(config: ServingConfig, env: Mapping[str, str]) -> str:
    """The bearer token from ``serving.token_env``; the proxy refuses to start without a
    strong enough one."""
    token = env.get(config.token_env, "")
    if not token:
        raise ServingError(
            f"{NAME}: {config.token_env} is unset; the proxy refuses to run without a token. "
            f"Set it to a random secret, e.g. export {config.token_env}="
            "\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\""
        )
    weakness = token_weakness(config, token)
    if weakness:
        raise ServingError(f"{NAME}: {weakness}")
    return token


def token_weakness(config: ServingConfig, token: str) -> str | None:
    """Why ``token`` may not guard a server (too short, or not a bearer token's characters),
    or None; every exposed server (the proxy, the demo page) holds its token to this rule."""
    if len(token) < config.min_token_chars:
        return (
            f"{config.token_env} holds {len(token)} characters; expected at least "
            f"{config.min_token_chars} (serving.min_token_chars)"
        )
    if not TOKEN_PATTERN.fullmatch(token):
        return (
            f"{config.token_env} may hold only letters, digits and ._~+/=- "
            "(a bearer token's characters)"
        )
    return None


def upstream_address(upstream: str) -> str:
    """``scheme://host:port`` of the server to protect; anything else (a path, a query, a
    character nginx would read as syntax) is refused."""
    parsed = urllib.parse.urlsplit(upstream)
    try:
        port = parsed.port
    except ValueError as error:
        raise ServingError(f"--upstream {upstream!r}: {error}") from error
    if (
        parsed.scheme not in UPSTREAM_SCHEMES
        or not parsed.hostname
        or port is None
        or parsed.path.strip("/")
        or parsed.query
        or parsed.fragment
        or parsed.username
        or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", parsed.netloc)
    ):
        raise ServingError(
            f"--upstream {upstream!r}: expected the server's address as http://HOST:PORT"
        )
    return f"{parsed.scheme}://{parsed.netloc}"


def _json_reply(code: str, message: str) -> str:
    """A refusal's body as MLflow words its errors, for a single-quoted nginx string."""
    return json.dumps({"error_code": code, "message": message}) + "\\n"


def nginx_config(
    run_dir: Path, host: str, port: int, upstream: str, token: str, max_body_bytes: int
) -> str:
    """The proxy's whole config: one server on ``host:port`` that passes requests carrying
    ``Authorization: Bearer <token>`` to ``upstream`` (without the token) and refuses the rest.
    Bodies are held in memory up to the limit, so nothing of a request touches the disk."""
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    temp = {kind: run_dir / kind for kind in TEMP_KINDS}
    unauthorized = _json_reply(
        "UNAUTHENTICATED", "expected the header Authorization: Bearer <token>"
    )
    too_large = _json_reply(
        "REQUEST_TOO_LARGE",
        f"the body is over the limit of {max_body_bytes} bytes (serving.max_body_bytes)",
    )
    return f"""# Written by `pair-classifier serve expose`; it holds the token: never share it.
daemon off;
master_process on;
worker_processes 1;
pid {run_dir / "nginx.pid"};
error_log stderr warn;
events {{
    worker_connections {WORKER_CONNECTIONS};
}}
http {{
    access_log off;  # to /dev/stdout, nginx would overwrite a redirected log
    server_tokens off;
    default_type application/json;
    client_max_body_size {max_body_bytes};
    client_body_buffer_size {max_body_bytes};
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    server {{
        listen {listen};
        error_page 413 @too_large;
        location / {{
            if ($http_authorization != "Bearer {token}") {{
                add_header WWW-Authenticate 'Bearer realm="pair-classifier"' always;
                return 401 '{unauthorized}';
            }}
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Authorization "";
            proxy_set_header Host $proxy_host;
            proxy_read_timeout {UPSTREAM_READ_TIMEOUT_S}s;
        }}
        location @too_large {{
            return 413 '{too_large}';
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """The nginx executable, on PATH or where Debian installs it."""
    found = shutil.which(NGINX) or shutil.which(NGINX, path=os.pathsep.join(NGINX_DIRS))
    if found is None:
        raise ServingError(
            f"{NAME}: `{NGINX}` not found; install it (Debian/Ubuntu: apt-get install nginx)"
        )
    return found


def write_config(run_dir: Path, text: str) -> Path:
    """The config, readable by its owner only."""
    run_dir.chmod(RUN_DIR_MODE)
    path = run_dir / CONFIG_FILE
    path.touch(mode=PRIVATE_FILE)
    path.write_text(text, encoding="utf-8")
    return path


def serve_expose(
    config: ServingConfig,
    upstream: str,
    host: str,
    port: int,
    env: Mapping[str, str],
    on_ready: Callable[[str], None],
) -> None:
    """Run the proxy on ``host:port`` in front of ``upstream`` until SIGTERM or Ctrl-C."""
    token = proxy_token(config, env)
    address = upstream_address(upstream)
    binary = nginx_binary()
    require_free_port(NAME, host, port)
    if not is_loopback(host):
        logger.warning(
            "%s: listening on %s, beyond loopback, in plain HTTP: the token crosses the network "
            "readable; put TLS in front (a tunnel does) or bind 127.0.0.1",
            NAME,
            host,
        )
    with tempfile.TemporaryDirectory(prefix="pair-classifier-proxy-") as tmp:
        run_dir = Path(tmp)
        text = nginx_config(run_dir, host, port, address, token, config.max_body_bytes)
        conf = write_config(run_dir, text)
        run_foreground(
            NAME,
            [binary, "-p", str(run_dir), "-c", str(conf), "-e", "stderr"],
            dict(env),
            ready=lambda: port_taken(host, port),
            start_timeout_s=config.start_timeout_s,
            stop_timeout_s=config.stop_timeout_s,
            on_ready=lambda: on_ready(
                f"http://{host}:{port} -> {address}; requests need "
                f"Authorization: Bearer ${config.token_env}, bodies at most "
                f"{config.max_body_bytes} bytes"
            ),
        )
