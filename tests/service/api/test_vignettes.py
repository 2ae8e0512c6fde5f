"""Every public clinical vignette through the API (skipped only where ../shared is absent)."""

from __future__ import annotations

import pytest

from tests.conftest import VIGNETTES, load_vignettes
from tests.service.api.vignette_checks import check_vignette

VIGNETTE_CASES = load_vignettes()


@pytest.mark.skipif(not VIGNETTE_CASES, reason=f"no vignettes at {VIGNETTES} (../shared is absent)")
@pytest.mark.parametrize("vignette", VIGNETTE_CASES, ids=[v["id"] for v in VIGNETTE_CASES])
def test_vignette_through_the_api(client, vignette):
    response = client.post("/v1/recommendations", json={"profile": vignette["profile"], "options": {"limit": 5}})
    assert response.status_code == 200, response.get_json()
    check_vignette(vignette, response.get_json())
