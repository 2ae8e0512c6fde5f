"""Random ids for answers and requests, exactly as ``uuid.uuid4()`` makes them (122 random
bits from os.urandom, the version and variant bits set), without building a UUID object
only to format it: two of those were ~3% of the service's own work per request.

The random bytes are read from os.urandom 4 KiB at a time rather than 16 bytes per id (a
system call per id was two per recommendation request). Each thread reads its own block,
and a forked child (a gunicorn worker) throws away what it inherited, so two processes or
threads never hand out the same bytes."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


# ---- answer ids that say which forms they recommended ------------------------------------
#
# Feedback is taken only for answers this service issued, and only on a form that answer
# recommended. Storing every answer's id would be a database write per answer (a third of
# the unkeyed throughput, measured), so the id carries what the check needs, signed:
#
#   122 free bits of a version-4 uuid = day (16) | forms (16) | random (54) | tag (36)
#
# ``day`` counts days since 1970-01-01 (feedback on an answer older than the retention period
# is refused), ``forms`` has bit i set when the knowledge base's i-th form was recommended,
# and ``tag`` is a keyed BLAKE2b over the rest and the knowledge base's form order (so an id
# made under another order of forms fails the check instead of naming the wrong forms). The
# id stays a canonical uuid4 text; only the service can make or check the tag.

_DAY_BITS, _FORM_BITS, _RANDOM_BITS, _TAG_BITS = 16, 16, 54, 36
MAX_SIGNED_FORMS = _FORM_BITS
_SIGNED_BITS = _DAY_BITS + _FORM_BITS + _RANDOM_BITS  # 86: what the tag covers
_TAG_MASK = (1 << _TAG_BITS) - 1
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1


def _spread(value: int) -> int:
    """122 bits into a uuid4's layout: the version nibble and the variant bits in between."""
    return ((value >> 74) << 80) | (0x4 << 76) | (((value >> 62) & 0xFFF) << 64) | (0b10 << 62) \
        | (value & ((1 << 62) - 1))


def _gather(number: int) -> int | None:
    """The 122 bits back out of a uuid4's 128, or None when it is not a version-4 RFC 4122 id."""
    if (number >> 76) & 0xF != 0x4 or (number >> 62) & 0b11 != 0b10:
        return None
    return ((number >> 80) << 74) | (((number >> 64) & 0xFFF) << 62) | (number & ((1 << 62) - 1))


@dataclass(frozen=True)
class IssuedAnswer:
    """What a checked answer id says: the day it was made and the forms it recommended."""

    day: int
    forms: tuple[str, ...]


class AnswerIds:
    """Makes and checks signed answer ids for one knowledge base's forms (in its order)."""

    def __init__(self, secret: bytes, form_ids: Sequence[str]):
        if len(form_ids) > MAX_SIGNED_FORMS:
            raise ValueError(f"answer ids can name at most {MAX_SIGNED_FORMS} forms, the knowledge base has "
                             f"{len(form_ids)}")
        self.form_ids = tuple(form_ids)
        self.form_bit = {form: 1 << i for i, form in enumerate(self.form_ids)}
        # the key covers the form order: ids from a knowledge base with other positions never verify
        key = hashlib.blake2b(b"answer-ids\0" + ",".join(self.form_ids).encode() + b"\0" + secret,
                              digest_size=32).digest()
        self._keyed = hashlib.blake2b(key=key, digest_size=8)  # copied per tag: cheaper than re-keying

    def _tag(self, signed: int) -> int:
        hasher = self._keyed.copy()
        hasher.update(signed.to_bytes(11))
        return int.from_bytes(hasher.digest()) & _TAG_MASK

    def mint(self, forms: Iterable[str], day: int | None = None) -> str:
        """A fresh id for an answer that recommended ``forms`` (ids of this knowledge base)."""
        form_bits = 0
        for form in forms:
            form_bits |= self.form_bit[form]
        if day is None:
            day = int(time.time() // 86400)
        signed = (day << (_FORM_BITS + _RANDOM_BITS)) | (form_bits << _RANDOM_BITS) \
            | (int.from_bytes(_random.take()) & _RANDOM_MASK)
        digits = f"{_spread((signed << _TAG_BITS) | self._tag(signed)):032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

    def read(self, answer_id: str | uuid.UUID) -> IssuedAnswer | None:
        """The day and forms of an id this service made with this key, else None."""
        try:
            number = answer_id.int if isinstance(answer_id, uuid.UUID) else uuid.UUID(answer_id).int
        except (ValueError, TypeError, AttributeError):
            return None
        value = _gather(number)
        if value is None:
            return None
        signed = value >> _TAG_BITS
        if not hmac.compare_digest(self._tag(signed).to_bytes(5), (value & _TAG_MASK).to_bytes(5)):
            return None
        form_bits = (signed >> _RANDOM_BITS) & ((1 << _FORM_BITS) - 1)
        if form_bits >> len(self.form_ids):
            return None
        forms = tuple(form for form, bit in self.form_bit.items() if form_bits & bit)
        return IssuedAnswer(day=signed >> (_FORM_BITS + _RANDOM_BITS), forms=forms)


def answer_id_secret() -> bytes:
    """FORMWISE_SECRET_KEY, or a secret the service made once in its database (shared by
    every worker and host on that database). Needs an app context."""
    from formwise.service.settings import setting
    from formwise.service.store import queries as storage

    return (setting("FORMWISE_SECRET_KEY") or storage.app_secret("answer-ids")).encode()
