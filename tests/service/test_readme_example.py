"""The example answer in the README and on the docs' getting-started page is what the
service answers today (all but the fresh id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_the_example_is_the_current_answer(client, page):
    text = (ROOT / page).read_text(encoding="utf-8")
    block = text.split("<!-- example:start -->", 1)[1].split("<!-- example:end -->", 1)[0]
    shown = json.loads(block.split("```json", 1)[1].split("```", 1)[0])
    command = text.split("## Ask it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    profile = json.loads(command.split("-d '", 1)[1].split("'", 1)[0])["profile"]
    answer = client.post("/v1/recommendations", json={"profile": profile, "options": {"limit": 2}}).get_json()
    shown.pop("recommendation_id"), answer.pop("recommendation_id")
    assert answer == shown, f"regenerate the example in {page}"
