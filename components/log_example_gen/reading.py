"""Reading a log file (impressions or a side table, plain or gzip) line by line, to its end or to
the point where it is damaged, with that damage described rather than raised.

Beam's own decompression stops silently at a cut-off gzip and raises a bare ``zlib.error`` (naming
no file) on corrupt bytes, so this reads the raw bytes through FileSystems (any file system Beam
knows) and inflates them itself. Lines longer than ``max_line_bytes`` are never held whole in
memory: only a prefix is kept, with the true size, so the parser can refuse them unparsed.
"""
from __future__ import annotations

import logging
import zlib
from typing import Any, Callable, Iterator, NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from msrec.components.log_example_gen.limits import IngestLimits
from msrec.components.log_example_gen.records import CORRUPT_FILE, TRUNCATED_FILE, quarantine_entry

GZIP_SUFFIX = ".gz"
CHUNK_BYTES = 1 << 16
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer (CRC and size are checked)

_log = logging.getLogger(__name__)


class Line(NamedTuple):
    line_no: int
    raw: bytes  # without the terminator; only a prefix when ``size`` is over the reader's limit
    size: int  # the line's full length in bytes


class Damage(NamedTuple):
    """Why a file could not be read to its end, and how much of it was read."""

    reason: str  # TRUNCATED_FILE or CORRUPT_FILE
    detail: str
    lines_read: int  # complete lines yielded before the damage
    fragment: bytes  # the incomplete line cut by the damage (may be empty)
    bytes_read: int  # bytes of the file consumed up to the damage
    bytes_unread: int  # bytes of the file after it (0 when the end is missing rather than unreadable)


class LineReader:
    """Iterate to get the file's lines; afterwards ``damage`` is None or what stopped the reading."""

    def __init__(self, path: str, max_line_bytes: int):
        self.path = path
        self.damage: Damage | None = None
        self._max = max_line_bytes
        self._pending = bytearray()
        self._size = 0
        self._line_no = 0

    def __iter__(self) -> Iterator[Line]:
        gzipped = self.path.endswith(GZIP_SUFFIX)
        inflater = zlib.decompressobj(_GZIP_WBITS) if gzipped else None
        consumed = 0
        with FileSystems.open(self.path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            while True:
                chunk = fh.read(CHUNK_BYTES)
                if not chunk:
                    break
                if inflater is None:
                    consumed += len(chunk)
                    yield from self._split(chunk)
                    continue
                before = inflater.copy()
                try:
                    data, inflater = _inflate(inflater, chunk)
                except zlib.error:
                    # Again byte by byte from before the chunk: keep every line inflated up to the bad byte.
                    data, at, error = _inflate_until_error(before, chunk)
                    yield from self._split(data)
                    total = _file_size(self.path)
                    self._damaged(CORRUPT_FILE, f"gzip data is corrupt at byte {consumed + at} of {total} ({error})",
                                  consumed + at, total - consumed - at)
                    return
                consumed += len(chunk)
                yield from self._split(data)
        if inflater is not None and not inflater.eof:
            self._damaged(TRUNCATED_FILE, f"gzip stream ends without its trailer after {consumed} bytes: "
                          "the end of the file is missing", consumed, 0)
            return
        if self._pending or self._size:
            yield self._emit()  # a last line without its terminator

    def _split(self, data: bytes) -> Iterator[Line]:
        start = 0
        while True:
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            self._size += len(piece)
            room = self._max + 1 - len(self._pending)  # keep just enough to show the line is too long
            if room > 0:
                self._pending += piece[:room]
            if end < 0:
                return
            yield self._emit()
            start = end + 1

    def _emit(self) -> Line:
        raw = bytes(self._pending)
        if raw.endswith(b"\r") and self._size <= self._max:
            raw = raw[:-1]
        self._line_no += 1
        line = Line(self._line_no, raw, self._size)
        self._pending.clear()
        self._size = 0
        return line

    def _damaged(self, reason: str, detail: str, bytes_read: int, bytes_unread: int) -> None:
        self.damage = Damage(reason, f"{detail}; {self._line_no} complete lines read", self._line_no,
                             bytes(self._pending), bytes_read, bytes_unread)


def damage_entry(damage: Damage, file: str) -> dict[str, Any]:
    """The quarantine record of a damaged file's unreadable rest (the line it cut, if any)."""
    return quarantine_entry(damage.reason, damage.detail, file, damage.lines_read + 1, damage.fragment)


def parsed_lines(path: str, limits: IngestLimits, parse: Callable[..., Any]) -> Iterator[tuple[Line | None, Any]]:
    """The one way a log file is read: (line, parse(raw, size=, file=, line_no=)) for each line; then,
    when the file is damaged, (None, Damage) and (None, the quarantine entry of its unread rest),
    which counts as one more line read."""
    reader = LineReader(path, limits.max_line_bytes)
    for line in reader:
        yield line, parse(line.raw, size=line.size, file=path, line_no=line.line_no)
    if reader.damage is not None:
        _log.warning("%s is damaged (%s): %s", path, reader.damage.reason, reader.damage.detail)
        yield None, reader.damage
        yield None, damage_entry(reader.damage, path)


def _inflate(inflater: "zlib._Decompress", chunk: bytes) -> tuple[bytes, "zlib._Decompress"]:
    """Inflate ``chunk``, continuing into the next gzip member when one ends (``cat a.gz b.gz``)."""
    out = [inflater.decompress(chunk)]
    while inflater.eof and inflater.unused_data:
        rest = inflater.unused_data
        inflater = zlib.decompressobj(_GZIP_WBITS)
        out.append(inflater.decompress(rest))
    return b"".join(out), inflater


def _inflate_until_error(inflater: "zlib._Decompress", chunk: bytes) -> tuple[bytes, int, zlib.error]:
    """What ``chunk`` inflates to before its first bad byte, that byte's offset, and the error."""
    out = []
    for at in range(len(chunk)):
        try:
            data, inflater = _inflate(inflater, chunk[at:at + 1])
        except zlib.error as e:
            return b"".join(out), at, e
        out.append(data)
    raise AssertionError("the chunk inflated without error this time")


def _file_size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes
