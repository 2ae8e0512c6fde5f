"""CDS Hooks fetches cannot be aimed (issue 19, part 1): a real local FHIR-like server that
misbehaves (redirects, a gzip bomb, an endless body, a trickle, errors), and URLs written to
escape the allow-list. Every failure past the allow-list reads the same to the caller."""

from __future__ import annotations

import http.server
import json
import socket
import time
import zlib

import pytest

from formwise.service.app import create_app
from formwise.service.clinical.fhir_fetch import NEUTRAL_FAILURE, BaseUrl, FhirFetchRefused

from .test_hooks import SERVICE, ServedInThread, bundle, hook_body, patient


class MisbehavingServer(ServedInThread):
    """A FHIR-like server on a free loopback port; ``mode`` says how it answers."""

    def __init__(self, mode="ok"):
        self.mode, self.requests = mode, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.requests.append(self.path)
                getattr(self, f"answer_{outer.mode}")()

            def send(self, status, body: bytes, **headers):
                self.send_response(status)
                for name, value in {"Content-Type": "application/fhir+json", "Content-Length": str(len(body)),
                                    **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def answer_ok(self):
                resource = patient() if "/Patient/" in self.path else bundle()
                self.send(200, json.dumps(resource).encode())

            def answer_redirect(self):
                self.send(302, b"", Location="http://169.254.169.254/latest/meta-data/")

            def answer_bomb(self):  # about 200 KB that inflate to 200 MB
                compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                block = b"\0" * (1024 * 1024)
                body = b"".join(compressor.compress(block) for _ in range(200)) + compressor.flush()
                self.send(200, body, **{"Content-Encoding": "gzip"})

            def answer_huge(self):  # an endless body, declared as 50 MB
                self.send_response(200)
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.end_headers()
                try:
                    for _ in range(800):
                        self.wfile.write(b" " * 65536)
                except OSError:
                    pass

            def answer_trickle(self):  # one byte a second, for ever
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    for _ in range(60):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass

            def answer_error(self):
                self.send(500, b"{}")

            def answer_notfound(self):
                self.send(404, b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/fhir/"


def app_client(allowed, private_hosts=("127.0.0.1",), **settings):
    return create_app({"TESTING": True, "FORMWISE_CDS_ALLOWED_FHIR_SERVERS": list(allowed),
                       "FORMWISE_CDS_FHIR_PRIVATE_HOSTS": list(private_hosts), **settings}).test_client()


def fetch_detail(client, fhir_server: str) -> str:
    body = hook_body(None, fhirServer=fhir_server, fhirAuthorization={
        "access_token": "secret-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "s"})
    response = client.post(SERVICE, json=body)
    assert response.status_code == 412, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()["detail"]


def test_the_happy_path_still_reads_the_server():
    with MisbehavingServer() as server:
        response = app_client([server.base]).post(SERVICE, json=hook_body(None, fhirServer=server.base))
        assert response.status_code == 200 and "/fhir/Patient/p1" in server.requests


@pytest.mark.parametrize(("written", "reason"), [
    ("{base}../admin/", "'.' or '..'"),
    ("{base}%2e%2e/admin/", "'.' or '..'"),
    ("http://user:pw@127.0.0.1:{port}/fhir/", "user name or password"),
    ("http://127.0.0.1:{other}/fhir/", "not one this service is configured to call"),
    ("http://127.0.0.1:{port}/fhirx/", "not one this service is configured to call"),
    ("https://127.0.0.1:{port}/fhir/", "not one this service is configured to call"),
])
def test_urls_written_to_escape_the_allow_list_are_refused_before_any_call(written, reason):
    with MisbehavingServer() as server:
        url = written.format(base=server.base, port=server.port, other=server.port + 1)
        assert reason in fetch_detail(app_client([server.base]), url)
        assert server.requests == []


def test_nothing_is_fetched_by_default():
    with MisbehavingServer() as server:
        client = create_app({"TESTING": True}).test_client()
        assert "prefetch only" in fetch_detail(client, server.base) and server.requests == []


@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.1"])
def test_loopback_is_refused_unless_allowed_by_name(host):
    with MisbehavingServer() as server:
        url = f"http://{host}:{server.port}/fhir/"
        client = app_client([url], private_hosts=())
        assert NEUTRAL_FAILURE in fetch_detail(client, url) and server.requests == []


def test_redirects_are_not_followed():
    with MisbehavingServer("redirect") as server:
        assert NEUTRAL_FAILURE in fetch_detail(app_client([server.base]), server.base)
        assert len(server.requests) == 1  # the first query only: no retry, nothing followed


@pytest.mark.parametrize("mode", ["bomb", "huge"])
def test_bodies_are_capped_before_and_after_decompression(mode):
    with MisbehavingServer(mode) as server:
        started = time.monotonic()
        assert NEUTRAL_FAILURE in fetch_detail(app_client([server.base]), server.base)
        assert time.monotonic() - started < 10


def test_a_trickling_server_meets_the_deadline():
    with MisbehavingServer("trickle") as server:
        started = time.monotonic()
        detail = fetch_detail(app_client([server.base], FORMWISE_CDS_FHIR_DEADLINE_SECONDS=2), server.base)
        assert NEUTRAL_FAILURE in detail
        assert time.monotonic() - started < 8  # the deadline plus one read timeout, not a minute


def test_closed_ports_errors_and_refusals_read_the_same():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/fhir/"
    details = []
    for mode in ("error", "notfound", "redirect"):
        with MisbehavingServer(mode) as server:
            details.append(fetch_detail(app_client([server.base]), server.base))
    details.append(fetch_detail(app_client([closed]), closed))
    assert len(set(details)) == 1, details


def test_a_malformed_allow_list_stops_start_up():
    with pytest.raises(ValueError, match="FORMWISE_CDS_ALLOWED_FHIR_SERVERS"):
        create_app({"TESTING": True, "FORMWISE_CDS_ALLOWED_FHIR_SERVERS": ["http://user@ehr.example.org/fhir"]})


def test_base_urls_are_normalised_before_matching():
    allowed = BaseUrl.parse("https://EHR.example.org/fhir")
    assert BaseUrl.parse("https://ehr.example.org:443/fhir/r4/").within(allowed)
    assert not BaseUrl.parse("https://ehr.example.org/fhir-other/").within(allowed)
    assert not BaseUrl.parse("https://ehr.example.org.evil.test/fhir/").within(allowed)
    with pytest.raises(FhirFetchRefused):
        BaseUrl.parse("https://ehr.example.org/fhir/./../x")
