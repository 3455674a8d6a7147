"""Bearer-token authentication between ghpo services, as pure ASGI middleware.

Every HTTP route requires `Authorization: Bearer <token>` except the probe/scrape paths in `OPEN_PATHS`
(/healthz, /readyz, /metrics), so a new route is protected by default. Tokens are compared in constant
time (`hmac.compare_digest`). A failure is a 401 error envelope saying which problem it was (missing
header, not a Bearer header, wrong token) with `WWW-Authenticate: Bearer`. With no token configured the
middleware is not installed at all (dev only; production settings refuse that). This is not user
authentication: there are no users, scopes or token rotation here.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from ghpo.shared.errors import Unauthorized, error_response
from ghpo.shared.logs import get_request_id

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def bearer_headers(token: str | None) -> dict[str, str]:
    """The header a client sends; empty when no token is configured."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_bearer(authorization: str | None, token: str) -> None:
    """Raise `Unauthorized` naming the problem unless `authorization` is `Bearer <token>`."""
    if not authorization:
        raise Unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <token>'", field="authorization"
        )
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("Authorization header is not of the form 'Bearer <token>'", field="authorization")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise Unauthorized("wrong bearer token", field="authorization")


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, token: str, open_paths: frozenset[str] = OPEN_PATHS):
        if not token:
            raise ValueError("BearerAuthMiddleware needs a non-empty token")
        self.app = app
        self.token = token
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        authorization = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            check_bearer(authorization, self.token)
        except Unauthorized as exc:
            if scope["type"] == "websocket":  # 1008: policy violation, before the handshake completes
                await send({"type": "websocket.close", "code": 1008, "reason": exc.message})
                return
            response = error_response(exc, get_request_id(), headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
