"""`bertkit serve`: its options, and the command; FastAPI and uvicorn are imported only when it runs, so the
other commands start without them."""

from __future__ import annotations

import argparse

from bertkit.arguments import bounded, file_path, positive
from bertkit.config import PRECISIONS
from bertkit.inference import RUNTIMES


def add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="an HTTP API with dynamic batching, and a page to try the model")
    serve.add_argument("model", type=file_path, help="model directory (bertkit train, or sentence-transformers)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    serve.add_argument("--port", type=bounded(int, 0, 65535, low_open=False), default=8080, help="0: any free port")
    serve.add_argument("--max-batch-size", type=positive(int), default=64, help="inputs per model call")
    serve.add_argument("--max-batch-tokens", type=positive(int), default=16384, help="tokens per model call")
    serve.add_argument(
        "--max-wait-ms",
        type=bounded(float, 0, 60_000, low_open=False),
        default=0.0,
        help="how long a request waits for company (0: none; batches form from what arrives while the model is busy)",
    )
    serve.add_argument("--max-queue", type=positive(int), default=1024, help="inputs waiting before 503")
    serve.add_argument("--max-inputs", type=positive(int), default=256, help="inputs per request before 413")
    serve.add_argument("--max-body-bytes", type=positive(int), default=1 << 20, help="request size before 413")
    serve.add_argument("--timeout", type=positive(float), default=30.0, help="seconds per request before 504")
    serve.add_argument(
        "--truncate", choices=("true", "false"), default="true", help="false: refuse over-long inputs (413)"
    )
    serve.add_argument("--no-batching", action="store_true", help="run each request alone (for comparison)")
    serve.add_argument("--precision", choices=PRECISIONS, default="auto")
    serve.add_argument("--runtime", choices=RUNTIMES, default="torch", help="onnx, onnx-int8: the exported graph")
    serve.add_argument("--task", help="a model saved by transformers: the task to read it as (pair)")
    serve.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> None:
    from bertkit.serving.batcher import BatchLimits
    from bertkit.serving.server import ServeOptions, serve

    limits = BatchLimits(
        args.max_batch_size, args.max_batch_tokens, args.max_wait_ms, args.max_queue, not args.no_batching
    )
    options = ServeOptions(
        limits,
        args.max_inputs,
        args.max_body_bytes,
        args.timeout,
        args.truncate == "true",
        args.precision,
        args.runtime,
        args.task,
    )
    serve(args.model, args.host, args.port, options)
