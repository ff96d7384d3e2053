"""The `bertkit` command run as a user runs it, in this process or in a fresh one."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from bertkit.cli import main

BERTKIT = [sys.executable, "-m", "bertkit.cli"]


def run_cli(*args: str, cwd: Path | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """The command's exit status and output: in this process (a traceback fails the test at once), or in a
    fresh one (`process`, or another working directory), where its log lines go to its stderr too."""
    if process or cwd is not None:
        return subprocess.run(
            [*BERTKIT, *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse's own errors
            code = exit.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def write_config(tmp_path: Path, setup: dict) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(setup))
    return path
