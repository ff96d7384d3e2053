"""What the server reports to Prometheus, and the middleware that counts, times and size-checks requests."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import HTTPException
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

ROUTES = ("/predict", "/embed", "/healthz", "/readyz", "/info", "/metrics", "/", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class ServerMetrics:
    """The server's own registry: requests by route and status, latency, batch sizes and tokens, queue depth."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        disable_created_metrics()  # `_created` series only double the page; nothing here reads them
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bertkit_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "bertkit_request_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.batch_size = Histogram(
            "bertkit_batch_size", "inputs per model call", buckets=SIZE_BUCKETS, registry=self.registry
        )
        self.batch_tokens = Histogram(
            "bertkit_batch_tokens", "tokens per model call", buckets=TOKEN_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("bertkit_queue_depth", "inputs waiting for the model", registry=self.registry)

    def observe_batch(self, size: int, tokens: int) -> None:
        self.batch_size.observe(size)
        self.batch_tokens.observe(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class observe_requests:  # noqa: N801 (an ASGI middleware, named as FastAPI's add_middleware reads it)
    """Refuses bodies over `max_body_bytes` (413) before they are read, and counts and times every request.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware: it costs nothing per request beyond the timing."""

    def __init__(self, app: Any, metrics: ServerMetrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        started, status = time.perf_counter(), 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self._too_large(scope):
                await _send_error(send_and_note, 413, f"request body over {self.max_body_bytes} bytes")
            else:
                await self.app(scope, self._bounded(receive), send_and_note)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _too_large(self, scope: dict) -> bool:
        length = dict(scope["headers"]).get(b"content-length")
        return length is not None and length.isdigit() and int(length) > self.max_body_bytes

    def _bounded(self, receive: Any) -> Any:
        """`receive` that stops a body without a Content-Length (chunked) once it passes the limit."""
        seen = 0

        async def bounded() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(413, f"request body over {self.max_body_bytes} bytes")
            return message

        return bounded


async def _send_error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
