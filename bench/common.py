"""Helpers shared by the benchmark scripts (run as ``python bench/NAME.py``)."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
