"""The scoring loop takes its tables packed into four arrays (formwise.models.engine.kernel.PackedTables) and
unpacks them by position: every table must come back as it went in."""

import numpy as np
import pytest

from formwise.models.engine.kernel import PackedTables, ScoringTables, pack_tables, unpack_tables
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.recommender import Recommender


@pytest.fixture(scope="module")
def engine():
    return Recommender(default_knowledge_base(), artifact=None).engine


def test_every_table_comes_back_with_its_values_shape_and_kind(engine):
    unpacked = ScoringTables(*unpack_tables(*engine.packed_tables))
    for name, original, returned in zip(ScoringTables._fields, engine.tables, unpacked, strict=True):
        original, returned = np.asarray(original), np.asarray(returned)
        assert returned.shape == original.shape, name
        assert np.array_equal(returned, original, equal_nan=original.dtype.kind == "f"), name
        # Integers may widen to int64; bool stays bool, uint8 stays uint8, floats stay float64.
        same_kind = returned.dtype == original.dtype or (original.dtype.kind == returned.dtype.kind == "i")
        assert same_kind, f"{name}: {original.dtype} came back as {returned.dtype}"


def test_the_packed_tables_are_four_flat_arrays_and_a_layout(engine):
    packed = engine.packed_tables
    assert isinstance(packed, PackedTables)
    assert (packed.floats.dtype, packed.small.dtype, packed.ints.dtype) == (np.float64, np.uint8, np.int64)
    assert packed.layout.shape == (len(ScoringTables._fields), 4)
    assert all(array.ndim == 1 and array.flags.c_contiguous for array in packed[:3])


def test_a_table_of_a_kind_no_buffer_holds_is_refused(engine):
    odd = engine.tables._replace(band_upper_edges=engine.tables.band_upper_edges.astype(np.float32))
    with pytest.raises(TypeError, match="band_upper_edges has dtype float32"):
        pack_tables(odd)


def test_a_vocabulary_too_wide_for_the_bit_sets_stops_the_engine(monkeypatch):
    from formwise.models.engine import scoring as engine_module
    from formwise.models.knowledge import vocabulary as vocab

    monkeypatch.setattr(vocab, "ANSWER_CAVEATS", tuple(f"caveat_{i}" for i in range(63)))
    with pytest.raises(ValueError, match="63 answer caveats do not fit"):
        engine_module.Engine(default_knowledge_base())
