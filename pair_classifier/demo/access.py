"""Who may open the demo page: the servers' token rule (docs/serving.md "Exposure").

The page answers anyone who reaches it, so it binds loopback unless a token guards it. The token
is the one the proxy uses (the variable ``serving.token_env`` names, at least
``serving.min_token_chars`` characters). When it is set, the page asks for it on Gradio's login
form (user ``demo.user``, the token as password) on any address, loopback included: on a shared
machine other users reach loopback too. Without it, a bind beyond loopback is refused.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping

from pair_classifier.serving.expose import token_weakness
from pair_classifier.serving.process import ServingError
from pair_classifier.serving.settings import ServingConfig, is_loopback

logger = logging.getLogger(__name__)

NAME = "demo page"


class DemoAccessError(ServingError):
    """The page cannot start as asked: no token for an exposed bind, or a weak token."""


def page_token(serving: ServingConfig, host: str, env: Mapping[str, str]) -> str | None:
    """The token the page requires, None for an open loopback page; a non-loopback ``host``
    without a token, or a token the proxy would refuse, stops the command."""
    token = env.get(serving.token_env, "")
    if not token:
        if is_loopback(host):
            return None
        raise DemoAccessError(
            f"{NAME}: refusing to listen on {host} without a token: set {serving.token_env} "
            f"(at least {serving.min_token_chars} characters, e.g. export {serving.token_env}="
            "\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\"), or bind "
            "127.0.0.1"
        )
    weakness = token_weakness(serving, token)
    if weakness:
        raise DemoAccessError(f"{NAME}: {weakness}")
    if not is_loopback(host):
        logger.warning(
            "%s: listening on %s, beyond loopback, in plain HTTP: the token and the session "
            "cookie cross the network readable; put TLS in front (a tunnel does) or bind "
            "127.0.0.1",
            NAME,
            host,
        )
    return token


def login_check(user: str, token: str) -> Callable[[str, str], bool]:
    """Gradio's ``auth`` callable: the user name and the token, compared in constant time."""
    expected_user, expected_token = user.encode(), token.encode()

    def check(given_user: str, given_password: str) -> bool:
        user_ok = hmac.compare_digest(str(given_user).encode(), expected_user)
        token_ok = hmac.compare_digest(str(given_password).encode(), expected_token)
        if not (user_ok and token_ok):
            logger.warning("%s: a login with a wrong user name or token was refused", NAME)
        return user_ok and token_ok

    return check
