"""The layout stays readable (docs: Architecture): no module of the service or the models
grows past 500 lines unless its docstring says why it stays whole."""

from __future__ import annotations

import ast

from tests.conftest import PROJECT_ROOT

MAX_LINES = 500
REASON = "stays whole"  # the phrase a long module's docstring uses to give its reason


def test_no_module_is_over_500_lines_without_a_reason():
    long_modules = []
    for folder in ("service", "models"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > MAX_LINES and REASON not in (ast.get_docstring(ast.parse(text)) or ""):
                long_modules.append(f"{path.relative_to(PROJECT_ROOT)}: {text.count(chr(10))} lines")
    assert long_modules == []
