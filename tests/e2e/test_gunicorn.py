"""The README's run command (formwise serve, real gunicorn, 2 workers) answers the API and
every public vignette over real HTTP."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import load_vignettes
from tests.e2e.server import running_service
from tests.service.api.vignette_checks import check_vignette

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("gunicorn")) as base:
        yield base


def test_vignettes_over_http(base_url):
    vignettes = load_vignettes()
    if not vignettes:
        pytest.skip("../shared/vignettes is absent")
    for vignette in vignettes:
        response = requests.post(base_url + "/v1/recommendations", json={"profile": vignette["profile"]}, timeout=10)
        assert response.status_code == 200
        check_vignette(vignette, response.json())


def test_problems_over_http(base_url):
    response = requests.post(base_url + "/v1/recommendations", data="{", headers={"Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    response = requests.post(base_url + "/v1/recommendations", data=b"x" * (2 * 1024 * 1024),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413
    assert requests.get(base_url + "/nowhere", timeout=10).headers["Content-Type"] == "application/problem+json"


def test_openapi_and_docs_over_http(base_url):
    assert requests.get(base_url + "/openapi.json", timeout=10).json()["openapi"].startswith("3.1")
    page = requests.get(base_url + "/docs", timeout=10)
    assert page.status_code == 200 and 'data-spec-url="/openapi.json"' in page.text
    script = requests.get(base_url + "/docs/swagger-ui/swagger-ui-bundle.js", timeout=10)
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text


def raw_request(base_url: str, data: bytes) -> tuple[str, dict, bytes]:
    """Sends bytes as they are (requests would refuse to write them) and reads the reply."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(data)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def test_gunicorns_own_errors_are_problems_and_keep_the_query_out_of_the_log(tmp_path):
    import json

    with running_service(tmp_path, workers=1) as base:
        headers = "".join(f"X-H{number}: 1\r\n" for number in range(150))
        status, fields, body = raw_request(base, f"GET /health/live HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        assert status.startswith("HTTP/1.1 431") or status.startswith("HTTP/1.1 400"), status
        assert fields["content-type"] == "application/problem+json"
        assert json.loads(body)["status"] == int(status.split()[1])
        status, fields, body = raw_request(
            base, b"GET /v1/forms?egfr=zzq-private-value HTTP/1.1 EXTRA\r\nHost: x\r\n\r\n")
        assert status.startswith("HTTP/1.1 400") and fields["content-type"] == "application/problem+json"
    log = (tmp_path / "server.log").read_text()
    assert "zzq-private-value" not in log, [line for line in log.splitlines() if "zzq" in line]


def test_gunicorns_error_lines_drop_the_query_string():
    import logging

    from formwise.service.ops.gunicorn_workers import redact_query_strings

    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1, "Error handling request %s %s",
                               ("GET", "/v1/forms?egfr=zzq-private-value&x=1"), None)
    assert redact_query_strings(record)
    assert record.getMessage() == "Error handling request GET /v1/forms?[query removed]"
