"""The layers of ``formwise.models`` (docs: Architecture): knowledge, then engine, then
learning, then the recommender that puts them together. A room imports only from the rooms
before it, and no part of models imports Flask or the service, so the engine can run in a
batch job, a Dask worker or a notebook without a web framework."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import PROJECT_ROOT

MODELS = PROJECT_ROOT / "models"
# room -> the formwise packages it may import
ALLOWED = {
    "knowledge": ("formwise.data", "formwise.models.knowledge"),
    "engine": ("formwise.data", "formwise.models.knowledge", "formwise.models.engine"),
    "learning": ("formwise.data", "formwise.models.knowledge", "formwise.models.engine", "formwise.models.learning"),
    "recommender.py": ("formwise.data", "formwise.models"),
}
NEVER = ("flask", "flask_smorest", "werkzeug", "sqlalchemy", "formwise.service")


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_the_rooms_before_it(room):
    paths = [MODELS / room] if room.endswith(".py") else sorted((MODELS / room).rglob("*.py"))
    wrong = sorted(f"{path.relative_to(PROJECT_ROOT)}: {name}" for path in paths for name in imported_modules(path)
                   if (name.startswith("formwise") and not name.startswith(ALLOWED[room]))
                   or name.startswith(NEVER))
    assert wrong == []


def test_every_module_of_models_is_in_a_room():
    rooms = {path.relative_to(MODELS).parts[0] for path in MODELS.rglob("*.py") if "__pycache__" not in path.parts}
    assert rooms - set(ALLOWED) == {"__init__.py"}
