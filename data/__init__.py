"""The knowledge base: plain, sourced data files that ship with the package.

Shared files (citations, medicines) sit here; each supplement has its own folder under
``supplements/`` with its forms, rules and texts, so a new supplement is a data change.
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
SUPPLEMENTS_DIR = DATA_DIR / "supplements"


def supplement_dir(supplement: str) -> Path:
    """The folder holding one supplement's knowledge base."""
    return SUPPLEMENTS_DIR / supplement
