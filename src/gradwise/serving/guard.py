"""Request guards as pure ASGI middleware: an API key on every route but the health checks,
and a limit on the body size (answered 401 and 413 before the app reads anything)."""

from __future__ import annotations

import hmac
import json
from typing import Any

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class GuardMiddleware:
    """Refuses requests without the API key (when one is set) or with a body over the limit.

    Args:
        api_key: the key clients send as `Authorization: Bearer KEY` or `X-API-Key: KEY`;
            None: no key needed.
        max_body_bytes: largest request body accepted.
    """

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if (
            self.api_key is not None
            and scope["path"] not in OPEN_PATHS
            and not hmac.compare_digest(_presented_key(headers), self.api_key)
        ):
            await _answer(
                send,
                401,
                "missing or wrong API key; send it as 'Authorization: Bearer KEY' or "
                "'X-API-Key: KEY'",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n_bytes = int(length)
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if n_bytes > self.max_body_bytes:
                await _answer(send, 413, self._too_large(n_bytes))
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # a chunked body: read it up to the limit, then hand it on
        body, more, size = [], True, 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _answer(send, 413, self._too_large(size, at_least=True))
                return
            body.append(chunk)
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

        async def replay_receive() -> Any:
            return replay.pop() if replay else await receive()

        await self.app(scope, replay_receive, send)

    def _too_large(self, n_bytes: int, at_least: bool = False) -> str:
        kb = self.max_body_bytes // 1024
        size = f"{'over ' if at_least else ''}{n_bytes // 1024} KB"
        return (
            f"request body is {size}, over the limit of {kb} KB; send fewer instances per "
            "request, or start the server with a larger --max-body-kb"
        )


def _presented_key(headers: dict[bytes, bytes]) -> bytes:
    auth = headers.get(b"authorization", b"")
    if auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return headers.get(b"x-api-key", b"").strip()


async def _answer(
    send: Any, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
