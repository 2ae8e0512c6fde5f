"""Random ids for answers and requests, exactly as ``uuid.uuid4()`` makes them (122 random
bits from os.urandom, the version and variant bits set), without building a UUID object
only to format it: two of those were ~3% of the service's own work per request."""

from __future__ import annotations

import os

_KEEP = ~((0xF000 << 64) | (0xC000 << 48))  # clears the version nibble and the variant bits
_VERSION_4_RFC_4122 = (0x4000 << 64) | (0x8000 << 48)


def _uuid4_hex() -> str:
    return f"{int.from_bytes(os.urandom(16)) & _KEEP | _VERSION_4_RFC_4122:032x}"


def request_id() -> str:
    """``uuid.uuid4().hex``: 32 hex digits."""
    return _uuid4_hex()


def answer_id() -> str:
    """``str(uuid.uuid4())``: 8-4-4-4-12 hex digits."""
    digits = _uuid4_hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
