"""Lines that are too long: a cheap check for them before pyarrow reads a file, and a filter
that passes a byte stream's lines on and replaces the lines over the limit by a placeholder,
never holding more than one line's limit."""

from __future__ import annotations

import io
import mmap
import os

import numpy as np

DEFAULT_MAX_LINE_BYTES = 1 << 20
# What an over-long line becomes on its way to the parser: one byte, so that the row keeps
# its number and is rejected (a CSV row of one value where the header has several; a JSON
# line that is not JSON), with the reason OVERLONG_REASON.
PLACEHOLDER = b"\x00"


OVERLONG_REASON = "Line longer than --max-line-bytes ({max_bytes:,} bytes): not read."


PROBE_BYTES = 32 << 10
SHORT_LINES = 2 * PROBE_BYTES - 1  # what longest_line answers when every line is shorter


def longest_line(path: str, stop_above: int, window: int = 64 << 20, probe: int = PROBE_BYTES) -> int:
    """The length of a file's longest line (without its newline), or the bound
    ``2 * probe - 1`` (SHORT_LINES) when every aligned ``probe``-byte block holds a newline
    (then no line is that long): that first check costs one memchr per block, a few hundred microseconds
    per 100 MB. Only a file with a newline-free block is scanned whole, with numpy a window
    at a time; that scan stops as soon as a line passes ``stop_above`` and returns that
    line's length so far."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    longest, last_newline = 0, -1
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        if all(mapped.find(b"\n", start, start + probe) >= 0 for start in range(0, size - probe + 1, probe)):
            return 2 * probe - 1
        for start in range(0, size, window):
            count = min(window, size - start)
            view = np.frombuffer(mapped, dtype=np.uint8, count=count, offset=start)
            newlines = np.flatnonzero(view == 10) + start
            del view  # the map cannot close while a view holds it
            if newlines.size:
                longest = max(longest, int(np.diff(newlines, prepend=last_newline).max()) - 1)
                last_newline = int(newlines[-1])
            longest = max(longest, start + count - 1 - last_newline)  # the line still open at the window's end
            if longest > stop_above:
                return longest
    return longest


class LineLimitedFile(io.RawIOBase):
    """A byte stream's lines, passed on, except lines longer than ``max_bytes``: each becomes
    PLACEHOLDER and its line number (1 = the first line) is kept in ``overlong``. Memory
    stays within one line's limit and one block whatever the input (a 2 GiB line is skipped,
    never held). Blocks are at most ``max_bytes``, so only the line at each block's edge can
    be too long: the lines inside a block pass on in one slice, not one by one."""

    def __init__(self, source, max_bytes: int = DEFAULT_MAX_LINE_BYTES, block_bytes: int = 1 << 20):
        self._source = source
        self.max_bytes = max_bytes
        self._block = max(1, min(block_bytes, max_bytes))
        self._out = bytearray()
        self._pending = bytearray()  # the start of the line that the last block did not finish
        self._skipping = False  # inside a line already known to be too long
        self._line = 1  # the number of the line that starts ``_pending``
        self._eof = False
        self.overlong: set[int] = set()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self._out) < len(buffer) and not self._eof:
            self._fill()
        count = min(len(buffer), len(self._out))
        buffer[:count] = self._out[:count]
        del self._out[:count]
        return count

    def _too_long(self) -> None:
        self.overlong.add(self._line)
        self._pending.clear()
        self._skipping = True

    def _fill(self) -> None:
        block = self._source.read(self._block)
        if not block:
            self._eof = True
            self._out += PLACEHOLDER if self._skipping else self._pending
            self._pending.clear()
            return
        first = block.find(b"\n")
        if first < 0:  # no line ends here
            if not self._skipping:
                self._pending += block
                if len(self._pending) > self.max_bytes:
                    self._too_long()
            return
        if self._skipping:
            self._out += PLACEHOLDER
            self._skipping = False
        elif len(self._pending) + first > self.max_bytes:
            self.overlong.add(self._line)
            self._out += PLACEHOLDER
        else:
            self._out += self._pending
            self._out += block[:first]
        self._pending.clear()
        last = block.rfind(b"\n")
        self._out += block[first:last + 1]  # the first line's newline, the lines inside, the last newline
        self._line += block.count(b"\n", first, last + 1)
        self._pending += block[last + 1:]
