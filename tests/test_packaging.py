"""The installed project has one import name: ``pip install .`` puts ``formwise`` (with
formwise.service, formwise.models and formwise.data) into site-packages and nothing else, and
the installed copy answers, serves its pages and migrates its database without the source
tree (issue 20, part 4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

SOURCE_FOLDERS = ("service", "models", "data")
# What an installed formwise reads from its own files: pages, scripts, migrations, the model.
PACKAGE_FILES = (
    "formwise/service/api/templates/handout.html",
    "formwise/service/api/templates/docs.html",
    "formwise/service/api/static/docs-start.js",
    "formwise/service/shops/templates/demo.html",
    "formwise/service/shops/static/widget.js",
    "formwise/service/store/migrations/env.py",
    "formwise/service/store/migrations/script.py.mako",
    "formwise/service/store/migrations/versions/0001_initial.py",
    "formwise/models/learning/artifacts/ranker.npz",
    "formwise/data/citations.csv",
    "formwise/data/locales/ui.csv",
    "formwise/data/codes/loinc.csv",
    "formwise/data/supplements/magnesium/forms.csv",
    "formwise/data/supplements/magnesium/manifest.toml",
)
# Run in the installed copy only: no site (so no editable finder pointing at the source
# tree), the wheel's folder first, then the dependencies of this environment.
INSTALLED_CHECK = """
import json, sys, tempfile
sys.path[:0] = [{site!r}, {dependencies!r}]
import formwise.service, formwise.models, formwise.data
from formwise.service.app import create_app, instance_folder
from formwise.service.cli.main import main
app = create_app({{"TESTING": True, "FORMWISE_DATA_DIR": tempfile.mkdtemp()}})
client = app.test_client()
answer = client.post("/v1/recommendations", json={{"profile": {{"age": 40}}}})
import importlib
from formwise.service.ops.gunicorn_config import WORKER_CLASSES
workers = [getattr(importlib.import_module(path.rsplit(".", 1)[0]), path.rsplit(".", 1)[1]).__name__
           for path in WORKER_CLASSES.values()]
from formwise.service.wsgi import app as served  # what ``formwise serve`` hands gunicorn
print(json.dumps({{
    "workers": workers, "served": type(served).__name__, "prefix": sys.prefix,
    "instance": str(instance_folder()), "commands_instance": create_app(parts=()).instance_path,
    "files": [formwise.service.__file__, formwise.models.__file__, formwise.data.__file__],
    "answer": answer.status_code, "model_version": answer.get_json()["model_version"],
    "widget": client.get("/widget.js").status_code, "demo": client.get("/demo").status_code,
    "docs": client.get("/docs").status_code,
    "handout": client.post("/v1/handout", json={{"profile": {{"age": 40}}}}).status_code,
}}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built once for the module from a copy of the source tree (setuptools writes
    its build folder beside the sources; a build takes seconds)."""
    source = tmp_path_factory.mktemp("source") / "formwise"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "site", "instance", "__pycache__", "*.egg-info", ".pytest_cache"))
    folder = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder),
                    str(source)], check=True, capture_output=True, timeout=600)
    (built,) = folder.glob("formwise-*.whl")
    return built


def test_the_wheel_has_one_top_level_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert top_level == {"formwise", f"formwise-{version}.dist-info"}
    entry_points = zipfile.ZipFile(wheel).read(f"formwise-{version}.dist-info/entry_points.txt").decode()
    assert "formwise = formwise.service.cli.main:main" in entry_points


def test_every_source_package_and_file_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = [init.parent.relative_to(PROJECT_ROOT) for folder in SOURCE_FOLDERS
                for init in (PROJECT_ROOT / folder).rglob("__init__.py") if "__pycache__" not in init.parts]
    missing = [str(package) for package in packages if f"formwise/{package.as_posix()}/__init__.py" not in names]
    assert not missing, f"add them to [tool.setuptools] packages in pyproject.toml: {missing}"
    sources = [path.relative_to(PROJECT_ROOT) for folder in ("service", "models")
               for path in (PROJECT_ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts]
    assert [str(path) for path in sources if f"formwise/{path.as_posix()}" not in names] == []
    assert [name for name in PACKAGE_FILES if name not in names] == []


def test_the_installed_copy_answers_without_the_source_tree(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=600)
    assert sorted(path.name for path in site.iterdir() if not path.name.endswith(".dist-info")) == ["bin", "formwise"]
    script = INSTALLED_CHECK.format(site=str(site), dependencies=sysconfig.get_paths()["purelib"])
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(Path(file).is_relative_to(site) for file in result["files"]), result["files"]
    assert result["model_version"].startswith("pairwise-")  # the shipped artifact, read from the wheel
    assert sorted(result["workers"]) == ["ProblemGeventWorker", "ProblemSyncWorker"]
    assert result["served"] == "FormwiseFlask"
    # installed, the server and the commands keep the embedded database in one place
    installed_instance = str(Path(result["prefix"]) / "var" / "formwise-instance")
    assert result["instance"] == result["commands_instance"] == installed_instance
    # numba's cache of the compiled kernel lives beside the installed source
    assert list((site / "formwise" / "models" / "engine" / "__pycache__").glob("kernel.*.nbi"))
    assert {key: result[key] for key in ("answer", "widget", "demo", "docs", "handout")} == dict.fromkeys(
        ("answer", "widget", "demo", "docs", "handout"), 200)
