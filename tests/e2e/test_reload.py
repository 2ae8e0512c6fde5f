"""SIGHUP under the real gunicorn (``formwise serve``, 2 workers, preload): the master
re-reads the knowledge base while clients keep sending requests, and not one of them fails.
A knowledge base that no longer loads keeps the previous one in service. Plus the
production defaults of service/ops/gunicorn_config.py."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.server import running_service

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROFILE = {"profile": {"age": 58, "sex": "female", "egfr": 72, "goals": ["sleep"], "medications": ["omeprazole"]}}
NEW_VERSION = "reload-test-2"
NEW_DISCLAIMER_END = "Reloaded on SIGHUP."


class SteadyClients:
    """Threads that post the same profile back to back until stopped, keeping every outcome:
    (knowledge_base_version, disclaimer) for a 200, or what went wrong otherwise."""

    def __init__(self, base: str, threads: int = 3):
        self.url = base + "/v1/recommendations"
        self.answers: list[tuple[str, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(self.url, json=PROFILE, timeout=30)
            except requests.RequestException as error:
                self.failures.append(f"{type(error).__name__}: {error}")
                continue
            if response.status_code != 200:
                self.failures.append(f"status {response.status_code}: {response.text[:200]}")
                continue
            body = response.json()
            self.answers.append((body["knowledge_base_version"], body["disclaimer"]))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for(self, condition, what: str, timeout: float = 60):
        """Wait until ``condition(answers)`` holds; a deadline only so a broken reload fails."""
        deadline = time.monotonic() + timeout
        while not condition(list(self.answers)):
            assert not self.failures, self.failures[:5]
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.05)


def log_entries(log_path: Path) -> list[dict]:
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]


def master_pid(log_path: Path) -> int:
    (pid,) = {entry["pid"] for entry in log_entries(log_path) if entry["message"].startswith("Listening at:")}
    return pid


def wait_for_log(log_path: Path, prefix: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for entry in log_entries(log_path):
            if entry["message"].startswith(prefix):
                return entry
        assert time.monotonic() < deadline, f"no log line starting {prefix!r}"
        time.sleep(0.05)


def set_manifest_version(folder: Path, version: str | None) -> None:
    """Write the version (None: remove the line, which makes the knowledge base invalid)."""
    manifest = folder / "manifest.toml"
    lines = [line for line in manifest.read_text().splitlines() if not line.startswith("knowledge_base_version")]
    if version is not None:
        lines.append(f'knowledge_base_version = "{version}"')
    manifest.write_text("\n".join(lines) + "\n")


def set_disclaimer_end(folder: Path, ending: str) -> None:
    path = folder / "texts.csv"
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        fields, rows = reader.fieldnames, list(reader)
    for row in rows:
        if row["key"] == "disclaimer":
            row["text_en"] = row["text_en"].rstrip() + " " + ending
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_sighup_reloads_the_knowledge_base_without_failing_a_request(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(PROJECT_ROOT / "data", data, ignore=shutil.ignore_patterns("__pycache__"))
    folder = data / "supplements" / "magnesium"
    env = {"FORMWISE_KNOWLEDGE_BASE_DIR": str(folder)}
    with running_service(tmp_path, workers=2, env=env) as base, SteadyClients(base) as clients:
        log_path = tmp_path / "server.log"
        clients.wait_for(lambda answers: len(answers) >= 20, "answers before the reload")
        first_version, first_disclaimer = clients.answers[0]
        assert first_version != NEW_VERSION and not first_disclaimer.endswith(NEW_DISCLAIMER_END)

        # A broken knowledge base: the master says why and the workers keep the old one.
        set_manifest_version(folder, None)
        os.kill(master_pid(log_path), signal.SIGHUP)
        failure = wait_for_log(log_path, "reload failed")
        assert "knowledge_base_version" in failure["message"] and failure["level"] == "error"
        answered = len(clients.answers)
        clients.wait_for(lambda answers: len(answers) >= answered + 20, "answers after the failed reload")
        assert {version for version, _ in clients.answers} == {first_version}

        # A good one: new answers follow, while the old workers finish what they hold.
        set_manifest_version(folder, NEW_VERSION)
        set_disclaimer_end(folder, NEW_DISCLAIMER_END)
        os.kill(master_pid(log_path), signal.SIGHUP)
        clients.wait_for(lambda answers: len(answers) >= 20 and all(version == NEW_VERSION
                                                                    for version, _ in answers[-20:]),
                         "20 answers in a row from the new knowledge base")
    assert clients.failures == []
    assert {version for version, _ in clients.answers} == {first_version, NEW_VERSION}
    assert all(disclaimer.endswith(NEW_DISCLAIMER_END)
               for version, disclaimer in clients.answers if version == NEW_VERSION)
    assert wait_for_log(log_path, "reloaded knowledge base")["message"].startswith(
        f"reloaded knowledge base {NEW_VERSION}")


def test_gunicorn_defaults_are_the_production_ones():
    """Read in a child process: the settings file sets PROMETHEUS_MULTIPROC_DIR as it loads."""
    script = (
        "import json, os, formwise.service.ops.gunicorn_config as c; "
        "print(json.dumps({'workers': c.workers, 'preload': c.preload_app, 'timeout': c.timeout, "
        "'graceful': c.graceful_timeout, 'accesslog': c.accesslog, "
        "'metrics_dir': os.environ['PROMETHEUS_MULTIPROC_DIR'], 'cpus': len(os.sched_getaffinity(0))})); "
        "c.on_exit(None)"
    )
    env = {key: value for key, value in os.environ.items()
           if key not in ("FORMWISE_WORKERS", "PROMETHEUS_MULTIPROC_DIR", "FORMWISE_METRICS_DIR_MADE_HERE")}
    output = subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, capture_output=True,
                            text=True, check=True).stdout
    settings = json.loads(output)
    assert settings["workers"] == settings["cpus"] and settings["preload"] is True
    assert 0 < settings["timeout"] <= 60 and 0 < settings["graceful"] <= 60
    assert settings["accesslog"] is None  # its request line would carry the query string
    assert not Path(settings["metrics_dir"]).exists()  # made on load, removed on exit
