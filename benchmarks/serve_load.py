"""Load test of `bertkit serve`: a real HTTP client (aiohttp) against the real server on 127.0.0.1.

For a model and a file of texts, one text a request: offline `Predictor` texts/s on the same texts (the
ceiling); closed-loop runs at 1, 8, 32 and 128 concurrent clients, each sending its next request when the
last is answered (requests/s, texts/s, p50 and p99 latency), with batching on and, against a second server,
off; then open-loop runs that start requests at a fixed rate whatever the answers: 80% of the measured
capacity (every request must succeed) and 2x capacity (only 503s may fail; no timeout, no crash), and the
server's peak RSS. Client and server share this machine's cores, as they would on one host.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from pathlib import Path

import aiohttp

from benchmarks.server_process import served
from bertkit.data.readers import read_table
from bertkit.inference import load

CLIENTS = (1, 8, 32, 128)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _summary(latencies: list[float], statuses: collections.Counter, seconds: float, **extra) -> dict:
    ok = statuses.get(200, 0)
    return {
        **extra,
        "requests_per_s": ok / seconds,  # and texts/s: one text a request
        "p50_ms": 1000 * _percentile(latencies, 0.50),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
    }


def _client(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_read=120))


async def _send(client, url: str, body: dict, latencies: list, statuses: collections.Counter) -> None:
    started = time.perf_counter()
    try:
        async with client.post(url, json=body) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as err:
        status = type(err).__name__
    statuses[status] += 1
    if status == 200:
        latencies.append(time.perf_counter() - started)


async def closed_loop(url: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    turn = iter(range(10**9))
    async with _client(clients) as client:
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                await _send(client, url, bodies[next(turn) % len(bodies)], latencies, statuses)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return _summary(latencies, statuses, elapsed, clients=clients)


async def open_loop(url: str, bodies: list[dict], rate: float, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    n = int(rate * seconds)
    async with _client(2048) as client:
        started = time.perf_counter()
        pending = []
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(_send(client, url, bodies[i % len(bodies)], latencies, statuses)))
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    return _summary(latencies, statuses, elapsed, offered_per_s=rate, requests=n)


def offline_texts_per_s(model_dir: Path, texts: list[str], embedding: bool, repeats: int = 2) -> float:
    """`bertkit predict` on the same texts, in this process: the server's ceiling."""
    predictor = load(model_dir)
    run = predictor.embed if embedding else predictor.predict
    run(texts)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(texts)
        times.append(time.perf_counter() - started)
    return len(texts) / statistics.median(times)


def load_test(model_dir: Path, data: Path, column: str, seconds: float, limit: int, max_queue: int) -> dict:
    texts = [str(row[column]) for row in read_table(data, [column], [column])][:limit]
    embedding = load(model_dir).task.name == "embed"
    route = "/embed" if embedding else "/predict"
    bodies = [{"inputs": [text]} for text in texts]
    result: dict = {"model": str(model_dir), "route": route, "texts": len(texts)}
    result["offline_texts_per_s"] = offline_texts_per_s(model_dir, texts, embedding)
    for batching, options in (("batching", ()), ("no_batching", ("--no-batching",))):
        with served(model_dir, "--max-queue", str(max_queue), *options) as server:
            runs = [asyncio.run(closed_loop(server.url + route, bodies, c, seconds)) for c in CLIENTS]
            result[batching] = runs
            if batching == "batching":
                capacity = max(r["requests_per_s"] for r in runs)
                result["capacity_requests_per_s"] = capacity
                result["at_80_percent_60s"] = asyncio.run(open_loop(server.url + route, bodies, 0.8 * capacity, 60))
                result["at_2x"] = asyncio.run(open_loop(server.url + route, bodies, 2 * capacity, 20))
                result["peak_rss_mib"] = server.peak_rss_mib()
            result[f"{batching}_exit_status"] = server.stop()
    on, off = (max(r["requests_per_s"] for r in result[k]) for k in ("batching", "no_batching"))
    result["batching_gain"] = on / off
    result["server_vs_offline"] = on / result["offline_texts_per_s"]
    return result
