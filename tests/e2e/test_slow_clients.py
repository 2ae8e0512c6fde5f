"""Slow clients cannot hold the workers (issue 19, part 2): ``formwise serve`` as the README
runs it, with slowloris-style connections on every worker (request headers one byte a
second, and bodies one byte every three seconds), still answers a probe within 1 s; a body
that does not arrive in time gets a 408 problem and headers that do not arrive are cut off.
With the sync worker class the same attack leaves the probes unanswered."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.e2e.server import running_service

pytestmark = pytest.mark.slow

HEAD = (b"POST /v1/recommendations HTTP/1.1\r\nHost: formwise\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200\r\n\r\n")


def address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def trickle_headers(base: str, stop: threading.Event) -> None:
    """The request line and headers, one byte a second."""
    try:
        with socket.create_connection(address(base), timeout=30) as sock:
            for byte in HEAD:
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(1)
    except OSError:
        return  # cut off by the server: what the header deadline is for


def trickle_body(base: str, stop: threading.Event, answers: list) -> None:
    """Whole headers at once, then the body one byte every three seconds; keeps what the
    server answers."""
    with socket.create_connection(address(base), timeout=30) as sock:
        sock.sendall(HEAD)
        try:
            while not stop.is_set():
                sock.sendall(b" ")
                stop.wait(3)
                sock.settimeout(0.01)
                try:
                    answered = sock.recv(4096)
                except TimeoutError:
                    continue
                finally:
                    sock.settimeout(30)
                answers.append(answered)
                return
        except OSError:
            return


def probe_while_attacked(base: str, connections: int, seconds: float) -> tuple[list[float], list]:
    """Starts ``connections`` of each slow kind, then probes /health/live twice a second
    with a 1 s timeout; returns the probe times (inf for a probe that failed) and what the
    slow-body connections were answered."""
    stop, answers = threading.Event(), []
    slow = [threading.Thread(target=trickle_headers, args=(base, stop), daemon=True) for _ in range(connections)]
    slow += [threading.Thread(target=trickle_body, args=(base, stop, answers), daemon=True)
             for _ in range(connections)]
    for thread in slow:
        thread.start()
    time.sleep(1.5)  # every slow connection is open and holding whatever it holds
    times = []
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        started = time.monotonic()
        try:
            requests.get(base + "/health/live", timeout=1).raise_for_status()
            times.append(time.monotonic() - started)
        except requests.RequestException:
            times.append(float("inf"))
        time.sleep(0.5)
    stop.set()
    for thread in slow:
        thread.join(timeout=35)
    return times, answers


def test_slow_clients_on_every_worker_leave_the_service_answering(tmp_path):
    with running_service(tmp_path, workers=2, env={"FORMWISE_BODY_TIMEOUT": "4"}) as base:
        times, answers = probe_while_attacked(base, connections=20, seconds=8)
        assert len(times) >= 10 and max(times) < 1.0, times
        # the bodies that never arrived were answered 408 problems, and the connection closed
        assert answers, "no slow-body connection was answered"
        for answered in answers:
            head, _, body = answered.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408") and b"application/problem+json" in head
            assert json.loads(body)["status"] == 408
        # and after the attack the service answers as before
        assert requests.post(base + "/v1/recommendations", json={"profile": {"age": 40}}, timeout=5).status_code == 200


def test_the_sync_worker_class_is_held_by_the_same_attack(tmp_path):
    """The reason for the gevent worker: the same attack on sync workers (the previous
    production setting) leaves every probe unanswered."""
    with running_service(tmp_path, workers=2, env={"FORMWISE_WORKER_CLASS": "sync"}) as base:
        times, _ = probe_while_attacked(base, connections=4, seconds=4)
        assert sum(t == float("inf") for t in times) >= len(times) - 1, times


def test_headers_that_do_not_arrive_in_time_are_cut_off(tmp_path):
    with running_service(tmp_path, workers=1) as base, socket.create_connection(address(base), timeout=30) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: formwise\r\n")  # and never the blank line
        # closed by the server after the keep-alive time (5 s); the socket's own 30 s timeout
        # would raise instead if it never were
        assert sock.recv(4096) == b""
