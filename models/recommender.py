"""The one entry point every adapter uses (HTTP, batch endpoint, files, widget, CDS Hooks):
validated profile dicts in, contract answers out, through the same vectorized engine.

It scores with the learned weights of the active artifact (``models/artifacts/ranker.npz``,
written by ``formwise train``), so every adapter answers with the same model and names it in
``model_version``. When the artifact is missing or does not fit this engine, it logs a warning
and uses the hand-set weights (``model_version: "hand-set"``). The safety masks come after the
weights either way. Reading the weights needs NumPy only: no pickle, no scikit-learn."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.answer import AnswerBuilder
from models.engine import HAND_SET, Engine, ScoredBatch
from models.features import FEATURE_NAMES, ProfileBatch, batch_from_profiles
from models.knowledge import KnowledgeBase, default_knowledge_base

log = logging.getLogger("formwise.model")
ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
ACTIVE_ARTIFACT = ARTIFACT_DIR / "ranker.npz"
ARTIFACT_FORMAT = 2
ARTIFACT_ARRAYS = ("artifact_format", "metadata", "weights", "estimator_skops")
CUSTOM_WEIGHTS = "custom-weights"


class ArtifactError(ValueError):
    """An artifact cannot be used: unreadable, from an untrusted place, holding untrusted
    types, or made for other factors or attributes. The message says which."""


@dataclass(frozen=True)
class ArtifactContents:
    weights: np.ndarray
    metadata: dict
    estimator: bytes  # the skops-serialised ranker (models.training.load_artifact reads it)


class Recommender:
    """``weights`` (factors x attributes) overrides the artifact; ``artifact=None`` asks for the
    hand-set weights. An artifact is only read from ``trusted_dir``."""

    def __init__(self, knowledge_base: KnowledgeBase | None = None, weights=None, model_version: str | None = None,
                 artifact: Path | str | None = ACTIVE_ARTIFACT, trusted_dir: Path | str = ARTIFACT_DIR):
        self.knowledge_base = knowledge_base or default_knowledge_base()
        if weights is None and artifact is not None:
            weights, model_version = _learned_weights(self.knowledge_base, Path(artifact), Path(trusted_dir))
        if model_version is None:
            model_version = HAND_SET if weights is None else CUSTOM_WEIGHTS
        self.engine = Engine(self.knowledge_base, weights=weights, model_version=model_version)
        self.answers = AnswerBuilder(self.engine)

    @property
    def version(self) -> str:
        return self.knowledge_base.version

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def batch(self, profiles: list[dict]) -> ProfileBatch:
        return batch_from_profiles(profiles, self.engine.form_position, self.engine.medicines)

    def score(self, batch: ProfileBatch) -> ScoredBatch:
        return self.engine.score(batch)

    def recommend(self, profiles: list[dict], limit: int = 3, locale: str = "en", explain: bool = False,
                  schedule: dict | None = None, waking_hours: dict | None = None) -> list[dict]:
        """One answer per validated profile, in order; a medicine ``schedule`` adds a timing plan."""
        if not profiles:
            return []
        batch = self.batch(profiles)
        return self.answers.answers(batch, self.engine.score(batch), limit, locale, explain, schedule, waking_hours)


def read_artifact(path: Path | str = ACTIVE_ARTIFACT, trusted_dir: Path | str = ARTIFACT_DIR) -> ArtifactContents:
    """An artifact's arrays, from ``trusted_dir`` only, with NumPy's pickle-free reader."""
    path, trusted_dir = Path(path).resolve(), Path(trusted_dir).resolve()
    if not path.is_relative_to(trusted_dir):
        raise ArtifactError(f"{path} is outside the trusted artifact folder {trusted_dir}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [name for name in ARTIFACT_ARRAYS if name not in arrays.files]
            if missing:
                raise ArtifactError(f"{path.name} is not a formwise artifact (no {', '.join(missing)})")
            if int(arrays["artifact_format"]) != ARTIFACT_FORMAT:
                raise ArtifactError(f"{path.name} is format {int(arrays['artifact_format'])}, not {ARTIFACT_FORMAT}")
            metadata = json.loads(str(arrays["metadata"]))
            weights = np.array(arrays["weights"], dtype=np.float64)
            estimator = arrays["estimator_skops"].tobytes()
    except ArtifactError:
        raise
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ArtifactError(f"{path.name} cannot be read: {type(error).__name__}: {error}") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path.name} has no metadata")
    return ArtifactContents(weights, metadata, estimator)


def check_compatible(contents: ArtifactContents, knowledge_base: KnowledgeBase) -> np.ndarray:
    """The artifact's weights, if they fit this knowledge base's factors and attributes."""
    metadata, weights = contents.metadata, contents.weights
    if metadata.get("feature_names") != list(FEATURE_NAMES):
        raise ArtifactError("it was trained on other profile factors")
    if metadata.get("attribute_names") != list(knowledge_base.scored_attributes):
        raise ArtifactError("it was trained on other form attributes")
    expected = (len(FEATURE_NAMES), len(knowledge_base.scored_attributes))
    if weights.shape != expected or not np.isfinite(weights).all():
        raise ArtifactError(f"its weights have shape {weights.shape}, the engine needs {expected}")
    if not isinstance(metadata.get("model_version"), str) or metadata["model_version"] in ("", HAND_SET):
        raise ArtifactError("it has no model version")
    return weights


def _learned_weights(knowledge_base: KnowledgeBase, artifact: Path, trusted_dir: Path) -> tuple[np.ndarray | None, str]:
    """The artifact's weights and version, or (None, "hand-set") with a warning saying why."""
    try:
        stat = artifact.stat()
    except OSError:
        log.warning("no model artifact at %s; scoring with the hand-set weights", artifact)
        return None, HAND_SET
    try:
        contents = _read_once(str(artifact.resolve()), str(trusted_dir.resolve()), stat.st_mtime_ns, stat.st_size)
        weights = check_compatible(contents, knowledge_base)
    except ArtifactError as error:
        log.warning("model artifact %s is not usable (%s); scoring with the hand-set weights", artifact, error)
        return None, HAND_SET
    metadata = contents.metadata
    if metadata.get("knowledge_base_version") != knowledge_base.version:
        log.warning("model artifact %s was trained with knowledge base %s, running %s; retrain with formwise train",
                    artifact.name, metadata.get("knowledge_base_version"), knowledge_base.version)
    running = importlib.metadata.version("scikit-learn")
    if metadata.get("sklearn_version") != running:
        log.warning("model artifact %s was written with scikit-learn %s, running %s; its weights are plain arrays "
                    "and are used as they are", artifact.name, metadata.get("sklearn_version"), running)
    return weights.copy(), metadata["model_version"]


@functools.lru_cache(maxsize=8)
def _read_once(artifact: str, trusted_dir: str, mtime_ns: int, size: int) -> ArtifactContents:
    """Read once per file version (tests and command-line tools build many recommenders)."""
    return read_artifact(artifact, trusted_dir)
