"""The model artifact: one NumPy ``.npz`` file, written atomically, that the service loads
at start. The service reads its weights and metadata with NumPy alone (no pickle, no
scikit-learn import); the estimator inside is skops bytes, read only for training and
inspection, and only with trusted types. Training writes it; the recommender reads it."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from formwise.models.engine.scoring import HAND_SET
from formwise.models.knowledge.base import FEATURE_NAMES, KnowledgeBase

if TYPE_CHECKING:  # the service reads weights without importing scikit-learn
    from formwise.models.learning.ranker import PairwisePreferenceRanker

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
ACTIVE_ARTIFACT = ARTIFACT_DIR / "ranker.npz"
ARTIFACT_FORMAT = 2
ARTIFACT_ARRAYS = ("artifact_format", "metadata", "weights", "estimator_skops")
# The only types an artifact may contain besides skops' built-in safe ones.
TRUSTED_ARTIFACT_TYPES = frozenset({"formwise.models.learning.ranker.PairwisePreferenceRanker"})


class ArtifactError(ValueError):
    """An artifact cannot be used: unreadable, from an untrusted place, holding untrusted
    types, or made for other factors or attributes. The message says which."""


@dataclass(frozen=True)
class ArtifactContents:
    weights: np.ndarray
    metadata: dict
    estimator: bytes  # the skops-serialised ranker (formwise.models.learning.training.load_artifact reads it)


@dataclass
class TrainingResult:
    ranker: PairwisePreferenceRanker
    metadata: dict

    @property
    def model_version(self) -> str:
        return self.metadata["model_version"]


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


def save_artifact(result: TrainingResult, path: Path = ACTIVE_ARTIFACT) -> Path:
    """Write to a temporary file beside ``path`` and rename it over ``path``: a reader sees
    the old artifact or the new one, never half of one."""
    import skops.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o644)  # mkstemp makes it private; the service may run as another user
        with os.fdopen(handle, "wb") as file:
            estimator = skops.io.dumps(result.ranker, compression=zipfile.ZIP_DEFLATED)
            np.savez_compressed(
                file,
                artifact_format=np.array(ARTIFACT_FORMAT),
                metadata=np.array(json.dumps(result.metadata, sort_keys=True)),
                weights=np.asarray(result.ranker.weights_, dtype=np.float64),
                estimator_skops=np.frombuffer(estimator, dtype=np.uint8),
            )
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def load_artifact(path: Path = ACTIVE_ARTIFACT, trusted_dir: Path = ARTIFACT_DIR) -> TrainingResult:
    """The fitted estimator and metadata of an artifact in ``trusted_dir``; the estimator may
    hold no type but the ranker's own and skops' safe built-ins."""
    import skops.io

    from formwise.models.learning.ranker import PairwisePreferenceRanker

    contents = read_artifact(path, trusted_dir)
    name = Path(path).name
    try:
        untrusted = set(skops.io.get_untrusted_types(data=contents.estimator))
        if untrusted - TRUSTED_ARTIFACT_TYPES:
            raise ArtifactError(f"{name} holds types that are not trusted: "
                                f"{sorted(untrusted - TRUSTED_ARTIFACT_TYPES)}")
        ranker = skops.io.loads(contents.estimator, trusted=sorted(untrusted))
    except ArtifactError:
        raise
    except Exception as error:
        raise ArtifactError(f"{name}'s estimator cannot be read: {type(error).__name__}: {error}") from None
    if not isinstance(ranker, PairwisePreferenceRanker) or not hasattr(ranker, "weights_"):
        raise ArtifactError(f"{name} holds no fitted ranker")
    if not np.array_equal(ranker.weights_, contents.weights):
        raise ArtifactError(f"{name}'s weights differ from its estimator's")
    return TrainingResult(ranker, contents.metadata)
