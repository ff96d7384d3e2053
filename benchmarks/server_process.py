"""A real `bertkit serve` process on 127.0.0.1 and a free port, for the server tests and the load test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a process manager stops it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def peak_rss_mib(self) -> float:
        """The process's peak resident memory so far (Linux: VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")


@contextmanager
def served(model_dir: Path, *options: str, ready_within: float = 180.0) -> Iterator[Server]:
    """`bertkit serve model_dir options` until the block ends; yields once /readyz answers 200."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="bertkit-serve-", suffix=".log")[1])
    command = [sys.executable, "-m", "bertkit", "serve", str(model_dir), "--port", str(port), *options]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}): {log.read_text()}")
            try:
                if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {ready_within} s: {log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)
