"""Helpers shared by the benchmark scripts (run as ``python bench/NAME.py``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

WRK_LUA = Path(__file__).resolve().parent / "wrk_post.lua"
WRK_MARKER = "--- formwise-bench ---"  # printed by WRK_LUA before its figures


def run_wrk(options: list[str], url: str, body_path: Path, timeout: float,
            api_key: str | None = None, count_statuses: bool = False) -> dict[str, float]:
    """wrk with ``options`` (threads, connections, duration...) POSTing ``body_path`` through
    bench/wrk_post.lua, with ``api_key`` as X-API-Key when given; the figures it prints, as
    numbers (with ``count_statuses``, also ``status_<code>`` for every status answered)."""
    result = subprocess.run(["wrk", *options, "-s", str(WRK_LUA), url], capture_output=True, text=True,
                            env={**os.environ, "WRK_BODY": str(body_path), "WRK_API_KEY": api_key or "",
                                 "WRK_COUNT_STATUSES": "1" if count_statuses else "0"},
                            timeout=timeout)
    if result.returncode != 0 or WRK_MARKER not in result.stdout:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    figures = {}
    for line in result.stdout.split(WRK_MARKER, 1)[1].strip().splitlines():
        key, value = line.split()
        figures[key] = float(value)
    return figures


def code_state(project: Path) -> str:
    """The commit measured, and whether models/ or service/ had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    if git("rev-parse", "--show-toplevel") != str(project.resolve()):
        return f"{project} (not a git checkout)"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "models", "service", "wsgi.py")
    state = " + uncommitted changes in models/ or service/" if dirty else " (clean models/ and service/)"
    return f"{project} at {commit}{state}"
