"""The README's run command (formwise serve: real gunicorn) answers with the shipped learned
model and takes feedback."""

from __future__ import annotations

import pytest
import requests

from formwise.models.learning.artifact import ACTIVE_ARTIFACT, load_artifact
from tests.e2e.server import running_service

pytestmark = pytest.mark.slow


def test_gunicorn_serves_the_shipped_model_and_stores_feedback(tmp_path):
    shipped = load_artifact(ACTIVE_ARTIFACT).model_version
    with running_service(tmp_path, workers=1) as base:
        answer = requests.post(base + "/v1/recommendations", json={"profile": {"age": 40, "goals": ["sleep"]}},
                               timeout=10).json()
        assert answer["model_version"] == shipped
        assert requests.get(base + "/health/ready", timeout=10).json()["model_version"] == shipped
        feedback = {"recommendation_id": answer["recommendation_id"], "form": answer["recommendations"][0]["form"],
                    "tolerated": True, "helpful": 5}
        response = requests.post(base + "/v1/feedback", json=feedback, timeout=10)
        assert response.status_code == 201 and response.json() == feedback
    assert "hand-set" not in (tmp_path / "server.log").read_text()
