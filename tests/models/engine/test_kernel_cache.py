"""Where the compiled scoring loop keeps its cache when numba finds no writable place
(models/engine/kernel.py): a read-only install run by a user without a writable home must still
start, and must not run machine code from a folder another user can write."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numba
import pytest

from formwise.models.engine import kernel


@pytest.fixture
def temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def private(path: Path) -> bool:
    details = path.lstat()
    return details.st_uid == os.getuid() and not details.st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def test_no_writable_place_sends_the_cache_to_a_private_temporary_folder(temporary_folder, monkeypatch):
    def no_locator(py_func):
        raise RuntimeError(f"cannot cache function {py_func.__name__!r}: no locator available")

    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(kernel, "FunctionCache", no_locator)
    kernel.use_writable_cache()
    chosen = Path(numba.config.CACHE_DIR)
    assert chosen == temporary_folder / f"formwise-numba-{os.getuid()}" and private(chosen)


def test_a_writable_place_or_the_operators_choice_is_left_alone(temporary_folder, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    kernel.use_writable_cache()  # this checkout is writable: numba's own choice stands
    assert numba.config.CACHE_DIR == ""
    monkeypatch.setattr(numba.config, "CACHE_DIR", "/srv/numba-cache")
    monkeypatch.setattr(kernel, "FunctionCache", lambda py_func: pytest.fail("the operator chose a folder"))
    kernel.use_writable_cache()
    assert numba.config.CACHE_DIR == "/srv/numba-cache"


def test_a_shared_folder_of_the_same_name_is_not_used(temporary_folder):
    taken = temporary_folder / f"formwise-numba-{os.getuid()}"
    taken.mkdir()
    taken.chmod(0o777)  # open to every user: anyone could plant machine code there
    chosen = Path(kernel._private_cache_dir())
    assert chosen != taken and chosen.parent == temporary_folder and private(chosen)
    taken.chmod(0o700)
    assert Path(kernel._private_cache_dir()) == taken  # a private one of the user's own is reused
