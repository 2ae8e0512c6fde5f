"""The one entry point every adapter uses (HTTP, batch endpoint, files, widget, CDS Hooks):
validated profile dicts in, contract answers out, through the same vectorized engine.

It scores with the learned weights of the active artifact (``models/artifacts/ranker.skops``,
written by ``formwise train``), so every adapter answers with the same model and names it in
``model_version``. When the artifact is missing or does not fit this engine, it logs a warning
and uses the hand-set weights (``model_version: "hand-set"``). The safety masks come after the
weights either way."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from models.answer import AnswerBuilder
from models.engine import HAND_SET, Engine, ScoredBatch
from models.features import ProfileBatch, batch_from_profiles
from models.knowledge import KnowledgeBase, default_knowledge_base

log = logging.getLogger("formwise.model")
ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
ACTIVE_ARTIFACT = ARTIFACT_DIR / "ranker.skops"
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
        return batch_from_profiles(profiles, self.engine.form_ids, self.engine.medicines)

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
    from models.training import ArtifactError, check_compatible

    try:
        stat = artifact.stat()
    except OSError:
        log.warning("no model artifact at %s; scoring with the hand-set weights", artifact)
        return None, HAND_SET
    try:
        result = _read_artifact(str(artifact.resolve()), str(trusted_dir.resolve()), stat.st_mtime_ns, stat.st_size)
        weights = check_compatible(result, knowledge_base)
    except ArtifactError as error:
        log.warning("model artifact %s is not usable (%s); scoring with the hand-set weights", artifact, error)
        return None, HAND_SET
    if result.metadata.get("knowledge_base_version") != knowledge_base.version:
        log.warning("model artifact %s was trained with knowledge base %s, running %s; retrain with formwise train",
                    artifact.name, result.metadata.get("knowledge_base_version"), knowledge_base.version)
    return weights.copy(), result.metadata["model_version"]


@functools.lru_cache(maxsize=8)
def _read_artifact(artifact: str, trusted_dir: str, mtime_ns: int, size: int):
    """Read once per file version (tests and command-line tools build many recommenders)."""
    import sklearn

    from models.training import load_artifact

    result = load_artifact(Path(artifact), Path(trusted_dir))
    trained_with = result.metadata.get("sklearn_version")
    if trained_with != sklearn.__version__:
        log.warning("model artifact %s was written with scikit-learn %s, running %s; its weights are plain "
                    "arrays and are used as they are", Path(artifact).name, trained_with, sklearn.__version__)
    return result
