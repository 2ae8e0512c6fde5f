"""The engine's arrays back into the contract's output columns, a whole chunk at a time: the
ranked forms, their scores, caveats and doses, as Arrow columns for CSV, Parquet or JSON Lines."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from formwise.models.engine.scoring import Engine, ScoredBatch
from formwise.models.knowledge import vocabulary as vocab
from formwise.service.batch.columns import LIST_SEPARATOR


def output_column_names(limit: int = 3) -> tuple[str, ...]:
    ranks = tuple(name for k in range(1, limit + 1) for name in (f"rank{k}_form", f"rank{k}_score"))
    return ("id", *ranks, "excluded", "caveat_codes", "max_severity", "unrecognized_medications")


def round_like_python(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """``round(float(x), digits)`` for every element, bit for bit. numpy's rounding scales
    by 10**digits first, which can land on the wrong side of a half; those few values
    (within 1e-6 of a half after scaling) are rounded by Python itself."""
    scale = 10.0 ** digits
    scaled = values * scale
    rounded = np.round(scaled) / scale
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    for position in np.flatnonzero(near_half):
        rounded.flat[position] = round(float(values.flat[position]), digits)
    return rounded


class OutputBuilder:
    """The contract's CSV/Parquet output columns from the engine's arrays.

    Columns with few distinct values (form ids, excluded forms, caveat codes, severity)
    are built as a dictionary: each distinct value's text once, then an index per row.
    ``as_text=True`` (for CSV) returns plain strings instead, scores included, written
    exactly as the API's JSON writes the rounded score."""

    MAX_TABLE_KEY = 1 << 20

    def __init__(self, engine: Engine):
        self.engine = engine
        self.form_ids = pa.array(engine.form_ids, pa.string())
        self.severities = pa.array(vocab.SEVERITIES, pa.string())
        self.score_texts = pa.array([repr(k / 10_000) for k in range(10_001)], pa.string())
        self._interaction_column = vocab.ANSWER_CAVEATS.index("medication_interaction")
        self._excluded_texts: dict[int, str] = {}
        self._caveat_texts: dict[int, str] = {}
        self._tail_texts: dict[int, str] = {}
        self._rank_table: pa.Array | None = None

    def columns(self, scored: ScoredBatch, ids: pa.Array, unrecognized: pa.Array, limit: int = 3,
                as_text: bool = False) -> pa.Table:
        n = len(scored.eligible_count)
        arrays: list[pa.Array] = [ids]
        rows = np.arange(n)
        n_forms = len(self.engine.form_ids)
        for k in range(limit):
            missing = scored.eligible_count <= k
            if k < n_forms:
                form = scored.order[:, k].astype(np.int32)
                score = round_like_python(scored.scores[rows, form])
            else:
                form, score = np.zeros(n, dtype=np.int32), np.zeros(n)
            arrays.append(self._dictionary(form, self.form_ids, as_text, missing))
            if as_text:
                steps = np.rint(score * 10_000).astype(np.int32)
                arrays.append(self.score_texts.take(pa.array(steps, mask=missing)))
            else:
                arrays.append(pa.array(score, mask=missing))
        arrays.append(self._excluded(scored.exclusion_bits != 0, as_text))
        arrays.append(self._caveat_codes(scored, as_text))
        arrays.append(self._dictionary(scored.max_severity.astype(np.int32), self.severities, as_text))
        arrays.append(unrecognized)
        return pa.Table.from_arrays(arrays, names=list(output_column_names(limit)))

    def csv_rows(self, scored: ScoredBatch, ids: pa.Array, unrecognized: pa.Array, limit: int = 3) -> pa.Buffer:
        """The same rows as CSV text (no header, nothing quoted: the caller checks that no
        id or medicine name needs quotes), built from three kinds of pre-rendered pieces:
        ``form,score`` per rank (one table of every form and 4-place score), the
        ``excluded,caveat_codes,max_severity`` tail (once per distinct combination), and
        the id and medicines; one vectorized join makes the lines."""
        n = len(scored.eligible_count)
        rows = np.arange(n)
        n_forms = len(self.engine.form_ids)
        rank_texts = self._rank_texts()
        missing_rank = len(rank_texts) - 1
        pieces: list[pa.Array] = [ids]
        for k in range(limit):
            if k < n_forms:
                form = scored.order[:, k].astype(np.int64)
                steps = np.rint(round_like_python(scored.scores[rows, form]) * 10_000).astype(np.int64)
                index = np.where(scored.eligible_count > k, form * 10_001 + steps, missing_rank)
            else:
                index = np.full(n, missing_rank)
            pieces.append(rank_texts.take(pa.array(index)))
        pieces.append(self._tails(scored))
        pieces.append(pc.binary_join_element_wise(unrecognized, "\n", ""))
        lines = pc.binary_join_element_wise(*pieces, ",")
        if len(lines) == 0:
            return pa.py_buffer(b"")
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=4 * lines.offset)
        return lines.buffers()[2][int(offsets[0]):int(offsets[-1])]

    def _rank_texts(self) -> pa.Array:
        """"form,score" for every form and every score 0.0000-1.0000, then "," (no rank)."""
        if self._rank_table is None:
            n_forms = len(self.engine.form_ids)
            forms = self.form_ids.take(pa.array(np.repeat(np.arange(n_forms), 10_001)))
            scores = self.score_texts.take(pa.array(np.tile(np.arange(10_001), n_forms)))
            table = pc.binary_join_element_wise(forms, scores, ",")
            self._rank_table = pa.concat_arrays([table, pa.array([","], pa.string())])
        return self._rank_table

    def _tails(self, scored: ScoredBatch) -> pa.Array:
        """"excluded,caveat_codes,max_severity" per row, each distinct combination once."""
        n_caveats = len(vocab.ANSWER_CAVEATS)
        excluded = scored.exclusion_bits != 0
        caveat_keys = _caveat_keys(scored)
        if excluded.shape[1] + 2 * n_caveats + 4 > 62:  # too wide for one integer: the columns' own texts
            parts = [self._excluded(excluded, True), self._caveat_codes(scored, True),
                     self._dictionary(scored.max_severity.astype(np.int32), self.severities, True)]
            return pc.binary_join_element_wise(*parts, ",")
        severity_count = len(vocab.SEVERITIES)
        caveat_key_bits = 2 * n_caveats + 2
        keys = (bit_keys(excluded) << caveat_key_bits) | caveat_keys
        keys = keys * severity_count + scored.max_severity.astype(np.int64)

        def tail_text(key: int) -> str:
            rest, severity = divmod(key, severity_count)
            excluded_key, caveat_key = rest >> caveat_key_bits, rest & ((1 << caveat_key_bits) - 1)
            return ",".join([self._excluded_text(excluded_key), self._caveat_text(caveat_key),
                             vocab.SEVERITIES[severity]])

        return self._lookup(keys, self._tail_texts, tail_text, as_text=True)

    @staticmethod
    def _dictionary(indices: np.ndarray, texts: pa.Array, as_text: bool, missing: np.ndarray | None = None):
        index_array = pa.array(indices, pa.int32(), mask=missing)
        if as_text:
            return texts.take(index_array)
        return pa.DictionaryArray.from_arrays(index_array, texts)

    def _lookup(self, keys: np.ndarray, cache: dict[int, str], text_for, as_text: bool) -> pa.Array:
        """One text per distinct key (built once per run), then an index per row."""
        keys = keys.astype(np.int64)
        if len(keys) and keys.max() < self.MAX_TABLE_KEY:
            seen = np.zeros(int(keys.max()) + 1, dtype=bool)
            seen[keys] = True
            distinct = np.flatnonzero(seen)
            position = np.zeros(len(seen), dtype=np.int32)
            position[distinct] = np.arange(len(distinct), dtype=np.int32)
            inverse = position[keys]
        else:
            distinct, inverse = np.unique(keys, return_inverse=True)
        texts = []
        for key in distinct.tolist():
            text = cache.get(key)
            if text is None:
                text = cache[key] = text_for(key)
            texts.append(text)
        return self._dictionary(inverse.astype(np.int32).ravel(), pa.array(texts, pa.string()), as_text)

    def _excluded_text(self, key: int) -> str:
        form_ids = self.engine.form_ids
        return LIST_SEPARATOR.join(form_ids[i] for i in range(len(form_ids)) if key >> i & 1)

    def _caveat_text(self, key: int) -> str:
        # The API lists present caveats in vocabulary order, stable-sorted by severity
        # (highest first); medication_interaction takes its interactions' severity, and a
        # caveat escalated for the person's age its higher one (key layout: _caveat_keys).
        n_caveats = len(vocab.ANSWER_CAVEATS)
        interaction_severity = ((key >> n_caveats) & 3) - 1
        escalated = key >> (n_caveats + 2)
        present = [i for i in range(n_caveats) if key >> i & 1]
        engine = self.engine
        severity = {i: (interaction_severity if i == self._interaction_column
                        else int(engine.caveat_escalated_severity[i]) if escalated >> i & 1
                        else int(engine.caveat_severity[i]))
                    for i in present}
        present.sort(key=lambda i: -severity[i])
        return LIST_SEPARATOR.join(vocab.ANSWER_CAVEATS[i] for i in present)

    def _excluded(self, excluded: np.ndarray, as_text: bool) -> pa.Array:
        form_ids = self.engine.form_ids
        if len(form_ids) > MAX_BIT_KEY_COLUMNS:  # too many forms for one integer key: key by row pattern
            distinct, inverse = np.unique(excluded, axis=0, return_inverse=True)
            texts = [LIST_SEPARATOR.join(form_ids[i] for i in np.flatnonzero(row)) for row in distinct]
            return self._dictionary(inverse.astype(np.int32).ravel(), pa.array(texts, pa.string()), as_text)
        return self._lookup(bit_keys(excluded), self._excluded_texts, self._excluded_text, as_text)

    def _caveat_codes(self, scored: ScoredBatch, as_text: bool) -> pa.Array:
        return self._lookup(_caveat_keys(scored), self._caveat_texts, self._caveat_text, as_text)


def _caveat_keys(scored: ScoredBatch) -> np.ndarray:
    """Per row, what orders its caveat codes: the raised caveats (bits 0..n-1), the interaction
    severity + 1 (2 bits) and the caveats escalated for the person's age (the next n bits)."""
    n_caveats = len(vocab.ANSWER_CAVEATS)
    return (scored.caveat_bits | ((scored.interaction_severity.astype(np.int64) + 1) << n_caveats)
            | (scored.escalated_caveat_bits << (n_caveats + 2)))

MAX_BIT_KEY_COLUMNS = 53  # exact in a float64 mantissa


def bit_keys(flags: np.ndarray) -> np.ndarray:
    """Each row of a boolean matrix as an integer, bit i = column i: one matrix-vector
    product (BLAS), exact because every partial sum fits the float's mantissa."""
    columns = flags.shape[1]
    if columns > MAX_BIT_KEY_COLUMNS:
        raise ValueError(f"at most {MAX_BIT_KEY_COLUMNS} columns, not {columns}")
    kind = np.float32 if columns <= 24 else np.float64
    weights = np.ldexp(np.ones(columns, dtype=kind), np.arange(columns))
    return (flags.view(np.uint8).astype(kind) @ weights).astype(np.int64)
