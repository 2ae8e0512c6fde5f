"""A first start says that it compiles the scoring loop and how long that took, and
``formwise warm`` compiles it ahead (issue 21, part 6): run in child processes with an empty
numba cache of their own, as on a fresh machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

START_APP = "from formwise.service.app import create_app; create_app()"


def run(args: list[str], cache: Path, data: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "FORMWISE_DATA_DIR": str(data)}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def engine_lines(stderr: str) -> list[str]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line["message"] for line in lines if line.get("logger") == "formwise.engine"]


def test_the_first_start_logs_the_compilation_and_warm_makes_the_next_start_load_it(tmp_path):
    formwise = shutil.which("formwise", path=str(Path(sys.executable).parent))
    cold = run([sys.executable, "-c", START_APP], tmp_path / "cache-1", tmp_path)
    assert cold.returncode == 0, cold.stderr[-2000:]
    messages = engine_lines(cold.stderr)
    assert messages[0].startswith("preparing the scoring loop: compiled on the first start")
    assert messages[1].startswith("scoring loop compiled and cached in ")

    warmed = run([formwise, "warm"], tmp_path / "cache-2", tmp_path)
    assert warmed.returncode == 0 and warmed.stdout.startswith("scoring loop compiled and cached in ")
    again = run([formwise, "warm"], tmp_path / "cache-2", tmp_path)
    assert again.stdout.startswith("scoring loop already cached in ")
    started = run([sys.executable, "-c", START_APP], tmp_path / "cache-2", tmp_path)
    assert engine_lines(started.stderr)[1].startswith("scoring loop loaded from the cache in ")
