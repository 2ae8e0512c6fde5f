"""Random ids for answers and requests, exactly as ``uuid.uuid4()`` makes them (122 random
bits from os.urandom, the version and variant bits set), without building a UUID object
only to format it: two of those were ~3% of the service's own work per request.

The random bytes are read from os.urandom 4 KiB at a time rather than 16 bytes per id (a
system call per id was two per recommendation request). Each thread reads its own block,
and a forked child (a gunicorn worker) throws away what it inherited, so two processes or
threads never hand out the same bytes."""

from __future__ import annotations

import os
import threading

_KEEP = ~((0xF000 << 64) | (0xC000 << 48))  # clears the version nibble and the variant bits
_VERSION_4_RFC_4122 = (0x4000 << 64) | (0x8000 << 48)
ID_BYTES = 16
BLOCK_BYTES = 4096


class _RandomBlock(threading.local):
    """This thread's unread random bytes: ``block[used:]``."""

    def __init__(self):
        self.block, self.used = b"", 0

    def take(self) -> bytes:
        if self.used + ID_BYTES > len(self.block):
            self.block, self.used = os.urandom(BLOCK_BYTES), 0
        start = self.used
        self.used = start + ID_BYTES
        return self.block[start:start + ID_BYTES]

    def discard(self) -> None:
        self.block, self.used = b"", 0


_random = _RandomBlock()
os.register_at_fork(after_in_child=_random.discard)


def _uuid4_hex() -> str:
    return f"{int.from_bytes(_random.take()) & _KEEP | _VERSION_4_RFC_4122:032x}"


def request_id() -> str:
    """``uuid.uuid4().hex``: 32 hex digits."""
    return _uuid4_hex()


def answer_id() -> str:
    """``str(uuid.uuid4())``: 8-4-4-4-12 hex digits."""
    digits = _uuid4_hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
