"""The one entry point every adapter uses (HTTP, batch endpoint, files, widget, CDS Hooks):
validated profile dicts in, contract answers out, through the same vectorized engine.

It scores with the learned weights of the active artifact (``models/learning/artifacts/ranker.npz``,
written by ``formwise train``), so every adapter answers with the same model and names it in
``model_version``. When the artifact is missing or does not fit this engine, it logs a warning
and uses the hand-set weights (``model_version: "hand-set"``). The safety masks come after the
weights either way. Reading the weights needs NumPy only: no pickle, no scikit-learn."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from pathlib import Path

import numpy as np

from formwise.models.engine.answers import AnswerBuilder
from formwise.models.engine.features import ProfileBatch, batch_from_profiles
from formwise.models.engine.scoring import HAND_SET, Engine, ScoredBatch
from formwise.models.knowledge.base import KnowledgeBase
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.learning.artifact import (
    ACTIVE_ARTIFACT,
    ARTIFACT_DIR,
    ArtifactContents,
    ArtifactError,
    check_compatible,
    read_artifact,
)

log = logging.getLogger("formwise.model")
CUSTOM_WEIGHTS = "custom-weights"
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
