"""The one entry point every adapter uses (HTTP, batch endpoint, files, widget, CDS Hooks):
validated profile dicts in, contract answers out, through the same vectorized engine."""

from __future__ import annotations

from models.answer import AnswerBuilder
from models.engine import HAND_SET, Engine, ScoredBatch
from models.features import ProfileBatch, batch_from_profiles
from models.knowledge import KnowledgeBase, default_knowledge_base


class Recommender:
    def __init__(self, knowledge_base: KnowledgeBase | None = None, weights=None, model_version: str = HAND_SET):
        self.knowledge_base = knowledge_base or default_knowledge_base()
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

    def recommend(self, profiles: list[dict], limit: int = 3, locale: str = "en", explain: bool = False) -> list[dict]:
        """One answer per validated profile, in order."""
        if not profiles:
            return []
        batch = self.batch(profiles)
        return self.answers.answers(batch, self.engine.score(batch), limit, locale, explain)
