"""Shared fixtures, in the flaskr tutorial's shape: app, client, runner; plus the
recommender and the shared vignettes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.recommender import Recommender
from service import create_app

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
VIGNETTES = SHARED_DIR / "vignettes" / "public.jsonl"


@pytest.fixture(scope="session")
def recommender() -> Recommender:
    return Recommender()


@pytest.fixture(scope="session")
def app():
    return create_app({"TESTING": True})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner():
    from click.testing import CliRunner

    return CliRunner()


def load_vignettes() -> list[dict]:
    if not VIGNETTES.is_file():
        return []
    return [json.loads(line) for line in VIGNETTES.read_text().splitlines() if line.strip()]
