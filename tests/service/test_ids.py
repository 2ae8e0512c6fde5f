"""Answer and request ids have uuid4's form: version 4, RFC 4122 variant, canonical text."""

from __future__ import annotations

import re
import uuid

from service import ids


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
