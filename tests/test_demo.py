import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_reaches_95_percent_on_bbc_news(tmp_path):
    """The main job end to end on real weights and real data (about 5 minutes on 2 cores)."""
    result = subprocess.run(
        [sys.executable, "-m", "bertkit.cli", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", result.stdout).group(1))
    assert accuracy >= 95.0
    assert (tmp_path / "runs" / "demo" / "model" / "model.safetensors").is_file()
