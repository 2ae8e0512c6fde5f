"""The README's run command (formwise serve, real gunicorn, 2 workers) answers the API and
every public vignette over real HTTP."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import load_vignettes
from tests.e2e.server import running_service
from tests.service.vignette_checks import check_vignette

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
    assert "/v1/recommendations" in requests.get(base_url + "/docs", timeout=10).text
