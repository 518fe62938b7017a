"""The fleet gateway: the only part of a SuperLink that members reach.

Flower 1.41 serves the Fleet API (SuperNodes), the Control API (runs, node registration) and the ServerApp
runtime API on one HTTP port and cannot bind them apart. The SuperLink therefore listens on 127.0.0.1, and
this small reverse proxy listens on the address members dial and forwards only ``/v1/fleet/*`` (and
``/health``) to it; every other path gets 404 without reaching the SuperLink. Both sides are TLS: it presents
the SuperLink's certificate to the nodes and checks the SuperLink's certificate against the CA. Requests
and replies (protobuf, at most a model's parameters per object) pass through unchanged, headers included,
so SuperNode authentication (a signature over a timestamp, in headers) works end to end.

    python -m unlearning.federation.gateway --listen 0.0.0.0:9092 --upstream 127.0.0.1:9093 \\
        --ca ca.pem --cert superlink.pem --key superlink.key

A reverse proxy of your own (nginx ``location /v1/fleet/ { proxy_pass https://127.0.0.1:9093; }``) does the
same job.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import httpx

ALLOWED_PREFIXES = ("/v1/fleet/",)
ALLOWED_PATHS = ("/health",)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def allowed(path: str) -> bool:
    """Whether a request path may pass to the SuperLink (the Fleet API and the health check only)."""
    if ".." in path or "//" in path:
        return False
    return path in ALLOWED_PATHS or path.startswith(ALLOWED_PREFIXES)


class FleetGateway:
    """An ASGI app forwarding the Fleet API to ``upstream`` (``https://127.0.0.1:9093``)."""

    def __init__(self, upstream: str, *, verify: ssl.SSLContext | bool = True, timeout: float = 600.0):
        self.upstream = upstream.rstrip("/")
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if not allowed(path):
            await _reply(send, 404, b"not found: only the Fleet API is served here\n")
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{self.upstream}{path}" + (f"?{query}" if query else "")
        try:
            reply = await self._client.request(scope["method"], url, content=bytes(body), headers=headers)
        except httpx.HTTPError as exc:
            await _reply(send, 502, f"SuperLink not reachable: {type(exc).__name__}\n".encode())
            return
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in reply.headers.multi_items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
        ]
        content = reply.content
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": reply.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearning.federation.gateway", description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT the SuperNodes dial")
    parser.add_argument("--upstream", required=True, help="the SuperLink's HOST:PORT (127.0.0.1:...)")
    parser.add_argument(
        "--ca", required=True, help="CA certificate (PEM) the SuperLink's certificate is checked against"
    )
    parser.add_argument("--cert", required=True, help="certificate (PEM) presented to the SuperNodes")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    args = parser.parse_args(argv)
    import uvicorn

    host, port = _split(args.listen)
    app = FleetGateway(f"https://{args.upstream}", verify=ssl.create_default_context(cafile=args.ca))
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
