"""`bertkit serve MODEL_DIR`: any saved bertkit model behind a JSON HTTP API (FastAPI on uvicorn).

Routes: `POST /predict` (the model's task), `POST /embed` (embedding models), `GET /healthz`, `GET /readyz`
(ready once the model is loaded and warmed), `GET /metrics` (Prometheus), `GET /info`, `GET /docs` (the
API's reference, made here: it works offline) and `GET /` (a page to try the model). Requests are gathered
into batches by `batcher.Batcher`; every error is a JSON body `{"error": ...}` with its status: 413 over a
size limit, 422 malformed, 503 queue full (with Retry-After) or not ready, 504 over the request timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
import threading
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from bertkit.data.readers import Row
from bertkit.errors import UserError
from bertkit.hub import model_directory
from bertkit.inference import RUNTIMES, Predictor, load, load_task
from bertkit.serving.api_docs import reference_page
from bertkit.serving.batcher import Batcher, BatchLimits, Job, QueueFull
from bertkit.serving.metrics import ServerMetrics, observe_requests
from bertkit.tokenizer import Tokenizer

log = logging.getLogger("bertkit")

One = str | list[str | list[str]] | dict[str, str | list[str]]


class PredictRequest(BaseModel):
    inputs: One | list[One] = Field(
        description="one input or a list: a text, or for models of several texts (pairs, QA) an object keyed "
        "by the input names of GET /info, or a list of the texts in that order; an input that GET /info "
        "lists in `list_inputs` is a list of texts",
        examples=["A great film.", [{"question": "Who?", "context": "Anna did."}]],
    )


class EmbedRequest(BaseModel):
    inputs: str | list[str] = Field(description="a text or a list of texts", examples=[["A cat.", "A kitten."]])


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    limits: BatchLimits = BatchLimits()
    max_inputs: int = 256  # inputs per request
    max_body_bytes: int = 1 << 20
    timeout_s: float = 30.0
    truncate: bool = True  # False: refuse inputs longer than the model's maximum
    precision: str = "auto"
    runtime: str = "torch"  # or onnx, onnx-int8: the graph `bertkit export` wrote beside the model
    task: str | None = None  # a directory saved by transformers: the task to read it as (pair)


def _fits(value: Any, is_list: bool) -> bool:
    """A text, or for a list input a non-empty list of texts."""
    if is_list:
        return isinstance(value, list) and bool(value) and all(isinstance(text, str) for text in value)
    return isinstance(value, str)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ModelService:
    """The model, its batcher and what the routes need of it; loads and warms off the event loop."""

    def __init__(self, model_dir: Path, options: ServeOptions, metrics: ServerMetrics) -> None:
        self.model_dir, self.options = model_dir, options
        self.predictor: Predictor | None = None
        self.ready = threading.Event()
        self.batcher = Batcher(
            {"predict": self._predict, "embed": self._embed},
            options.limits,
            on_batch=metrics.observe_batch,
            on_depth=metrics.queue_depth.set,
        )

    def load(self) -> None:
        options = self.options
        predictor = load(self.model_dir, precision=options.precision, runtime=options.runtime, task=options.task)
        predictor.predict_rows([predictor.task.warm_up_row()])
        self.predictor = predictor
        self.batcher.start()
        self.ready.set()
        log.info("bertkit: ready")
        log.setLevel(logging.WARNING)  # per-batch notes (texts cut) go into each response instead

    def _predict(self, rows: list[Row]) -> list[dict]:
        return self.predictor.predict_rows(rows)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return self.predictor.embed(texts).tolist()

    def info(self) -> dict:
        task = self.predictor.task
        return {
            "model": str(self.model_dir),
            "task": task.name,
            "inputs": task.input_columns,
            "list_inputs": task.list_inputs,
            "widget": task.widget,
            "labels": getattr(task, "labels", None),
            "max_len": task.max_len,
            "embeds": task.embeds,
            "limits": {
                "max_inputs": self.options.max_inputs,
                "max_body_bytes": self.options.max_body_bytes,
                "timeout_s": self.options.timeout_s,
                "truncate": self.options.truncate,
                **dataclasses.asdict(self.options.limits),
            },
        }

    def rows(self, inputs: Any) -> list[Row]:
        """Request inputs as rows of the task's input columns (a list is always a list of inputs); 422 for
        an input of the wrong shape."""
        task = self.predictor.task
        columns, lists = task.input_columns, task.list_inputs
        rows = []
        for number, item in enumerate(inputs if isinstance(inputs, list) else [inputs], start=1):
            if isinstance(item, str) and len(columns) == 1 and not lists:
                fields = {columns[0]: item}
            elif isinstance(item, list) and len(item) == len(columns):
                fields = dict(zip(columns, item, strict=True))
            elif isinstance(item, dict):
                fields = {column: item.get(column) for column in columns}
            else:
                fields = {}
            if not fields or not all(_fits(fields[column], column in lists) for column in columns):
                shapes = [f"{column} (a list of texts)" if column in lists else column for column in columns]
                raise HTTPException(422, f"input {number}: this model takes {' and '.join(shapes)}")
            rows.append(Row("request", number, fields))
        return rows

    def count_tokens(self, rows: list[Row]) -> tuple[int, list[int]]:
        """Tokens the batch will hold, and per input the tokens truncation drops (refused when it is off)."""
        task = self.predictor.task
        lengths = task.sequence_lengths(rows)
        if task.windowed:
            return sum(map(sum, lengths)), [0] * len(lengths)
        max_len = task.max_len
        dropped = [sum(max(0, n - max_len) for n in sequences) for sequences in lengths]
        if not self.options.truncate and any(dropped):
            first = next(i for i, n in enumerate(dropped) if n)
            raise HTTPException(413, f"input {first + 1}: {dropped[first]} tokens over the model's {max_len}")
        return sum(min(n, max_len) for sequences in lengths for n in sequences), dropped

    async def answer(self, kind: str, inputs: list[Any], rows: list[Row]) -> tuple[list[Any], list[int]]:
        if not inputs:
            raise HTTPException(422, "inputs: empty")
        if len(inputs) > self.options.max_inputs:
            raise HTTPException(413, f"{len(inputs)} inputs, over the limit of {self.options.max_inputs}")
        try:  # an input the task refuses (a choice of one ending, say) is the request's fault
            tokens, dropped = self.count_tokens(rows)
            try:
                future = self.batcher.submit(Job(kind, inputs, tokens))
            except QueueFull as err:
                raise HTTPException(503, f"queue full: {err}", headers={"Retry-After": "1"}) from None
            try:
                results = await asyncio.wait_for(asyncio.wrap_future(future), self.options.timeout_s)
            except asyncio.TimeoutError:
                future.cancel()
                raise HTTPException(504, f"no answer within {self.options.timeout_s:g} s") from None
        except UserError as err:
            raise HTTPException(422, str(err).replace("request: line ", "input ")) from None
        return results, dropped


async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    return _error(err.status_code, str(err.detail), getattr(err, "headers", None))


async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
    """A body FastAPI could not read: the first problem, named by where it is."""
    first = err.errors()[0]
    if first.get("type") == "json_invalid":
        return _error(422, f"body: invalid JSON ({first.get('ctx', {}).get('error', 'cannot parse')})")
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return _error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}")


def failed(app: FastAPI, loading: asyncio.Future) -> None:
    """A model that fails to load stops the server; `serve` raises the error once it has stopped."""
    if loading.cancelled() or loading.exception() is None:
        return
    app.state.load_error = loading.exception()  # `serve` reports it, once the server has stopped
    getattr(app.state, "stop", lambda: None)()


def add_plain_routes(app: FastAPI, metrics: ServerMetrics) -> None:
    """The routes that answer without the model: liveness, Prometheus metrics, the page and the API's reference."""

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("bertkit.serving").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/docs", response_class=HTMLResponse)
    async def docs() -> str:
        return reference_page(app.openapi())


def create_app(model_dir: Path, options: ServeOptions = ServeOptions()) -> FastAPI:
    metrics = ServerMetrics()
    service = ModelService(model_dir, options, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.load_error = None
        loading = asyncio.get_running_loop().run_in_executor(None, service.load)
        loading.add_done_callback(lambda done: failed(app, done))
        yield
        await asyncio.wait([loading])
        if service.ready.is_set():
            service.batcher.stop()

    app = FastAPI(
        title="bertkit", description=f"The model in {model_dir}", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.add_middleware(observe_requests, metrics=metrics, max_body_bytes=options.max_body_bytes)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    add_plain_routes(app, metrics)

    def ready_service() -> ModelService:
        if not service.ready.is_set():
            raise HTTPException(503, "the model is loading", headers={"Retry-After": "1"})
        return service

    @app.post("/predict")
    async def predict(request: PredictRequest) -> JSONResponse:
        """The model's task on one input or a list: labels and probabilities, values, tags and entities,
        answers with their spans, or for an embedding model the similarity of two texts."""
        live = ready_service()
        rows = live.rows(request.inputs)
        predictions, dropped = await live.answer("predict", rows, rows)
        return JSONResponse({"predictions": predictions, "tokens_dropped": dropped})

    @app.post("/embed")
    async def embed(request: EmbedRequest) -> JSONResponse:
        """One vector per text, in input order (embedding models)."""
        live = ready_service()
        if not live.predictor.task.embeds:
            raise HTTPException(422, f"a {live.predictor.task.name} model gives no embeddings; use /predict")
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        column = live.predictor.task.input_columns[0]
        rows = [Row("request", number, {column: text}) for number, text in enumerate(texts, start=1)]
        vectors, dropped = await live.answer("embed", texts, rows)
        # straight to JSON: FastAPI's encoder would visit each of the vectors' floats in Python
        return JSONResponse({"embeddings": vectors, "tokens_dropped": dropped})

    @app.get("/readyz")
    async def readyz() -> dict:
        ready_service()
        return {"status": "ready"}

    @app.get("/info")
    async def info() -> dict:
        return ready_service().info()

    return app


def check_address(host: str, port: int) -> None:
    """Bind the address once, so that a host that is not this machine's or a port in use is one clear line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except (OSError, UnicodeError) as err:
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({getattr(err, 'strerror', None) or err})"
        ) from None


def serve(model_dir: Path, host: str, port: int, options: ServeOptions) -> None:
    """Run until SIGTERM or Ctrl-C: then stop accepting, answer what is in flight, and return."""
    import uvicorn

    # a wrong directory or address is a user error at once, not a server that never gets ready
    model_dir = model_directory(model_dir)
    load_task(model_dir, Tokenizer.from_pretrained(model_dir), options.task)
    if RUNTIMES[options.runtime] and not (model_dir / RUNTIMES[options.runtime]).is_file():
        raise UserError(f"{model_dir / RUNTIMES[options.runtime]}: not found (make it with `bertkit export`)")
    check_address(host, port)
    app = create_app(model_dir, options)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=options.timeout_s)
    )
    app.state.stop = lambda: setattr(server, "should_exit", True)
    # uvicorn shuts down gracefully on these, then raises them again for whatever handled them before;
    # ignoring them then lets a graceful stop end with status 0 rather than death by signal
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda number, frame: None)
    log.info("bertkit: serving %s on http://%s:%d (loading the model)", model_dir, host, port)
    server.run()
    if app.state.load_error is not None:
        raise app.state.load_error
