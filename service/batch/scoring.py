"""Scoring one chunk: its rows checked by the API schema's own rules, encoded as columns,
scored by the one engine, and turned into output columns and rejects."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from formwise.service.api.ids import answer_id
from formwise.service.batch import columns as columnar
from formwise.service.batch.answer_columns import OutputBuilder, output_column_names
from formwise.service.batch.columns import ColumnEncoder, FieldRules
from formwise.service.batch.formats import (
    MALFORMED_FIELD,
    Summary,
    rejects_table,
)
from formwise.service.batch.lines import DEFAULT_MAX_LINE_BYTES, OVERLONG_REASON, PLACEHOLDER
from formwise.service.batch.readers import JsonChunk, TabularChunk
from formwise.service.batch.writers import NEEDS_QUOTES, CsvPart, any_match, defuse_formulas, render_csv


def field_rules() -> FieldRules:
    """The API schema's limits and messages, read from the schema objects themselves so
    that the file path can never drift from what ``POST /v1/recommendations`` accepts.
    Form ids are the engine's own (the encoder lists them), as the API's are the running
    knowledge base's: a FORMWISE_KNOWLEDGE_BASE_DIR may hold other forms than the package."""
    import marshmallow as ma

    from formwise.service.api.schemas import BatchItemSchema, PreferencesSchema, ProfileSchema

    profile, preferences, item = ProfileSchema(), PreferencesSchema(), BatchItemSchema()

    def failure(validator, value) -> str:
        try:
            validator(value)
        except ma.ValidationError as error:
            return error.messages[0]
        raise AssertionError(f"{validator!r} accepted {value!r}")

    age, egfr = profile.fields["age"].validators[0], profile.fields["egfr"].validators[0]
    serum = profile.fields["serum_magnesium"].validators[0]
    units = preferences.fields["max_units_per_day"].validators[0]
    medication_length = profile.fields["medications"].inner.validators[0]
    list_length = profile.fields["conditions"].validators[0]
    id_length = item.fields["id"].validators[0]
    messages = {
        "required": profile.fields["age"].error_messages["required"],
        "id_length": failure(id_length, ""),
        "whole_number": profile.fields["age"].error_messages["invalid"],
        "age_range": failure(age, age.max + 1),
        "sex": failure(profile.fields["sex"].validators[0], "?"),
        "boolean": profile.fields["pregnant"].error_messages["invalid"],
        "number": profile.fields["egfr"].error_messages["invalid"],
        "special_number": profile.fields["egfr"].error_messages["special"],
        "egfr_range": failure(egfr, egfr.max + 1),
        "serum_range": failure(serum, serum.max + 1),
        "conditions": failure(profile.fields["conditions"].inner.validators[0], "?"),
        "goals": failure(profile.fields["goals"].inner.validators[0], "?"),
        "medication_length": failure(medication_length, ""),
        "list_length": failure(list_length, [0] * (list_length.max + 1)),
        "units_range": failure(units, units.max + 1),
        "empty_row": columnar.DEFAULT_MESSAGES["empty_row"],
    }
    return FieldRules(
        age_range=(age.min, age.max),
        egfr_range=(float(egfr.min), float(egfr.max)),
        serum_range=(float(serum.min), float(serum.max)),
        units_range=(units.min, units.max),
        max_list_items=list_length.max,
        medication_chars=(medication_length.min, medication_length.max),
        id_chars=(id_length.min, id_length.max),
        messages=messages,
    )


def knowledge_base():
    """The packaged knowledge base, or FORMWISE_KNOWLEDGE_BASE_DIR like the server."""
    from formwise.models.knowledge.loading import default_knowledge_base, load_knowledge_base
    from formwise.service.settings import Settings

    folder = Settings()["FORMWISE_KNOWLEDGE_BASE_DIR"]  # the command has no app: the environment
    return load_knowledge_base(folder=Path(folder)) if folder else default_knowledge_base()


def make_recommender(kb=None):
    """The same Recommender (knowledge base and active model) the server builds."""
    from formwise.models.recommender import Recommender

    return Recommender(kb or knowledge_base())


@dataclass
class ChunkResult:
    output: pa.Table | list[bytes]
    rejects: pa.Table | None
    summary: Summary = field(default_factory=Summary)


class ChunkScorer:
    """Scores chunks for one output kind: a table (CSV/Parquet) or JSON Lines answers.

    ``recommender`` may be a Future: loading the model (the learned artifact) takes a
    while, and the first chunks are read meanwhile. The encoder needs only the knowledge
    base, so it is ready at once."""

    def __init__(self, recommender, output_kind: str, limit: int = 3, locale: str = "en",
                 rules: FieldRules | None = None, kb=None, validate_only: bool = False,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        from formwise.models.engine.medicines import MedicineIndex

        self.validate_only = validate_only  # check rows and count them; no engine, no output
        self.max_line_bytes = max_line_bytes
        self._recommender = recommender
        self.output_kind = output_kind
        self.limit = limit
        self.locale = locale
        if recommender is None or isinstance(recommender, Future):
            kb = kb or knowledge_base()
            self.encoder = ColumnEncoder(rules=rules or field_rules(), form_ids=kb.form_ids,
                                         medicines=MedicineIndex(kb))
        else:
            self.encoder = ColumnEncoder(recommender.engine, rules or field_rules())
        self._builder = None
        self._lock = threading.Lock()

    @property
    def recommender(self):
        if isinstance(self._recommender, Future):
            self._recommender = self._recommender.result()
        return self._recommender

    @property
    def engine(self):
        return self.recommender.engine

    @property
    def builder(self) -> OutputBuilder:
        with self._lock:
            if self._builder is None:
                if tuple(self.engine.form_ids) != self.encoder.form_ids:
                    raise RuntimeError("the model's knowledge base has other forms than the encoder's")
                self._builder = OutputBuilder(self.engine)
        return self._builder

    def wait_ready(self) -> None:
        """Block until the model is loaded (raises what loading raised)."""
        _ = self.recommender

    def ready(self) -> bool:
        return not isinstance(self._recommender, Future) or self._recommender.done()

    def versions(self, kb) -> dict[str, str | None]:
        """The knowledge base and model the rows were checked (and scored) with."""
        if self.validate_only:
            return {"knowledge_base": kb.version, "model": None}
        return {"knowledge_base": self.recommender.version, "model": self.recommender.model_version}

    def score(self, chunk) -> ChunkResult:
        if isinstance(chunk, JsonChunk):
            return self._score_json(chunk)
        return self._score_tabular(chunk)

    def empty_output(self) -> pa.Table:
        chunk = TabularChunk({"id": pa.array([], pa.string()), "age": pa.array([], pa.string())},
                             np.zeros(0, dtype=np.int64))
        return self._score_tabular(chunk).output

    def _score_tabular(self, chunk: TabularChunk) -> ChunkResult:
        summary = Summary()
        malformed = chunk.malformed
        if malformed is not None:
            summary.rows_in += malformed.num_rows
            summary.rows_rejected += malformed.num_rows
        if not chunk.columns:
            return ChunkResult(self._empty_part(), malformed, summary)
        wants_answers = self.output_kind == "jsonl"
        encoded = self.encoder.encode(chunk.columns, keep_medications=wants_answers)
        n = len(encoded.valid)
        rejected = encoded.rejected
        rejects = None
        if rejected.any():
            mask = pa.array(rejected)
            ids = encoded.ids.filter(mask)
            ids = pc.if_else(pc.equal(pc.fill_null(pc.utf8_length(ids), 0), 0), pa.scalar(None, pa.string()), ids)
            rejects = rejects_table(chunk.rows[rejected], ids, encoded.fields.filter(mask),
                                    encoded.reasons.filter(mask))
        if malformed is not None:
            rejects = malformed if rejects is None else _sorted_rejects([malformed, rejects])
        valid_ids = encoded.ids.filter(pa.array(encoded.valid)) if rejected.any() else encoded.ids
        scored_count = len(encoded.batch)
        summary.rows_in += n
        summary.rows_scored += scored_count
        summary.rows_rejected += n - scored_count
        if self.validate_only:
            return ChunkResult(None, rejects, summary)
        if wants_answers:
            profiles = columnar.profile_dicts(encoded.batch, encoded.medications, self.encoder.form_ids)
            return ChunkResult(self._answer_lines(valid_ids.to_pylist(), profiles), rejects, summary)
        scored = self.engine.score(encoded.batch)
        output = self._output(scored, valid_ids.cast(pa.string()), encoded.unrecognized)
        return ChunkResult(output, rejects, summary)

    def _output(self, scored, ids: pa.Array, unrecognized: pa.Array):
        """The output part: a table (Parquet), or CSV text rendered here, on the worker."""
        if self.output_kind != "csv":
            return self.builder.columns(scored, ids, unrecognized, self.limit)
        names = output_column_names(self.limit)
        ids, unrecognized = defuse_formulas(ids), defuse_formulas(unrecognized)
        if not (any_match(ids, NEEDS_QUOTES) or any_match(unrecognized, NEEDS_QUOTES)):
            return CsvPart(names, self.builder.csv_rows(scored, ids, unrecognized, self.limit), len(ids))
        return render_csv(self.builder.columns(scored, ids, unrecognized, self.limit, as_text=True))

    def _empty_part(self):
        return [] if self.output_kind == "jsonl" else None

    def _score_json(self, chunk: JsonChunk) -> ChunkResult:
        import marshmallow as ma

        from formwise.service.api.errors import flatten_messages
        from formwise.service.api.schemas import item_id_of, load_batch_item  # the batch endpoint's own checks

        ids, profiles = [], []
        reject_rows, reject_ids, reject_fields, reject_reasons = [], [], [], []
        for row, line in zip(chunk.rows.tolist(), chunk.lines, strict=True):
            if not line.strip():
                reject_rows.append(row)
                reject_ids.append(None)
                reject_fields.append(columnar.EMPTY_ROW)
                reject_reasons.append(self.encoder.messages["empty_row"])
                continue
            if line.rstrip(b"\n") == PLACEHOLDER:  # a line over --max-line-bytes, never read whole
                reject_rows.append(row)
                reject_ids.append(None)
                reject_fields.append(MALFORMED_FIELD)
                reject_reasons.append(OVERLONG_REASON.format(max_bytes=self.max_line_bytes))
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                reject_rows.append(row)
                reject_ids.append(None)
                reject_fields.append(MALFORMED_FIELD)
                reject_reasons.append(f"Not valid JSON: {error}.")
                continue
            item_id = item_id_of(item)
            try:
                profile = load_batch_item(item)
            except ma.ValidationError as error:
                errors = flatten_messages(error.messages)
                reject_rows.append(row)
                reject_ids.append(item_id)
                reject_fields.append(columnar.LIST_SEPARATOR.join(dict.fromkeys(
                    _field_name(error_item["field"]) for error_item in errors)))
                reject_reasons.append("; ".join(f"{e['field']}: {e['message']}" for e in errors))
                continue
            ids.append(item_id)
            profiles.append(profile)
        summary = Summary(len(chunk.lines), len(profiles), len(reject_rows))
        rejects = rejects_table(reject_rows, reject_ids, reject_fields, reject_reasons) if reject_rows else None
        if self.validate_only:
            return ChunkResult(None, rejects, summary)
        if not profiles:
            return ChunkResult([] if self.output_kind == "jsonl" else None, rejects, summary)
        if self.output_kind == "jsonl":
            return ChunkResult(self._answer_lines(ids, profiles), rejects, summary)
        batch = self.recommender.batch(profiles)
        scored = self.engine.score(batch)
        unrecognized = pa.array([columnar.LIST_SEPARATOR.join(names) for names in batch.unrecognized_medications],
                                pa.string())
        return ChunkResult(self._output(scored, pa.array(ids, pa.string()), unrecognized), rejects, summary)

    def _answer_lines(self, ids: list, profiles: list[dict]) -> list[bytes]:
        if not profiles:
            return []
        batch = self.recommender.batch(profiles)
        answers = self.recommender.answers.answers(batch, self.engine.score(batch), self.limit, self.locale)
        return [
            orjson.dumps({"id": item_id, "output": {"recommendation_id": answer_id(), **answer},
                          "error": None}) + b"\n"
            for item_id, answer in zip(ids, answers, strict=True)
        ]


def _field_name(path: str) -> str:
    """'profile.conditions.1' -> 'profile.conditions'."""
    parts = path.split(".")
    while len(parts) > 1 and parts[-1].isdigit():
        parts.pop()
    return ".".join(parts)


def _sorted_rejects(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(tables)
    return table.take(pc.sort_indices(table["row"]))
