"""Answer and request ids have uuid4's form: version 4, RFC 4122 variant, canonical text."""

from __future__ import annotations

import concurrent.futures
import os
import re
import uuid

from formwise.service.api import ids


def test_answer_ids_are_canonical_version_4_uuids():
    made = [ids.answer_id() for _ in range(2000)]
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    assert len(set(made)) == len(made)


def test_request_ids_are_version_4_uuids_as_32_hex_digits():
    made = [ids.request_id() for _ in range(2000)]
    for text in made:
        parsed = uuid.UUID(hex=text)
        assert re.fullmatch(r"[0-9a-f]{32}", text) and parsed.hex == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert len(set(made)) == len(made)
    # every bit that uuid4 leaves random does vary
    varying = 0
    for text in made:
        varying |= int(text, 16) ^ int(made[0], 16)
    assert varying == (2**128 - 1) & ~((0xF000 << 64) | (0xC000 << 48))


def test_a_forked_child_does_not_repeat_the_parents_ids():
    """gunicorn forks workers from a master that may already have made ids: a child must
    not hand out the bytes it inherited."""
    ids.request_id()  # the parent now holds an unread block
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: send 10 ids and leave at once
        os.close(reader)
        os.write(writer, "".join(ids.request_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        child_text = pipe.read().decode()
    os.waitpid(child, 0)
    child_ids = {child_text[i:i + 32] for i in range(0, len(child_text), 32)}
    parent_ids = {ids.request_id() for _ in range(10)}
    assert len(child_ids) == 10 and not child_ids & parent_ids


def test_threads_never_share_ids():
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(lambda _: [ids.answer_id() for _ in range(1000)], range(8)))
    made = [text for batch in batches for text in batch]
    assert len(set(made)) == len(made) == 8000


# ---- signed answer ids (issue 19: feedback only for answers this service issued) ----------

FORMS = ("citrate", "glycinate", "oxide", "malate")


def test_a_signed_answer_id_is_a_uuid4_that_names_its_day_and_forms():
    signer = ids.AnswerIds(b"secret", FORMS)
    made = {signer.mint(["oxide", "citrate"], day=20794) for _ in range(2000)}
    assert len(made) == 2000
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
        assert signer.read(text) == ids.IssuedAnswer(day=20794, forms=("citrate", "oxide"))
    assert signer.read(signer.mint([])).forms == ()


def test_ids_from_another_secret_or_another_order_of_forms_do_not_verify():
    signer = ids.AnswerIds(b"secret", FORMS)
    made = signer.mint(["glycinate"])
    assert ids.AnswerIds(b"other secret", FORMS).read(made) is None
    assert ids.AnswerIds(b"secret", ("glycinate", "citrate", "oxide", "malate")).read(made) is None
    assert signer.read(str(uuid.uuid4())) is None
    assert signer.read("not a uuid") is None and signer.read(None) is None
    assert signer.read(uuid.UUID(made)) is not None


def test_a_knowledge_base_with_more_forms_than_an_id_can_name_is_refused():
    import pytest

    with pytest.raises(ValueError, match="at most 16 forms"):
        ids.AnswerIds(b"secret", [f"form{i}" for i in range(17)])
