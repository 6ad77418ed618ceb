"""Incremental ``Content-Encoding`` decoding whose every output piece is bounded (no Airflow import).

httpx's own decoders turn one network chunk into all the bytes it expands to before a caller can
count them: a 250 KB gzip body of zeros becomes 250 MB in one step. :class:`BoundedDecoder` uses
zlib's ``max_length`` instead, so a caller that counts the pieces stops a decompression bomb after
at most one piece beyond its cap.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

#: The codings :class:`BoundedDecoder` undoes, as sent in ``Accept-Encoding``.
ACCEPT_ENCODING = "gzip, deflate"
#: The most bytes a call log may decode to unless the caller says otherwise. Here, not with the
#: downloaders, so that operators can default to it without importing them at DAG-parse time.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


class ContentDecodingError(ValueError):
    """The body does not decode with its ``Content-Encoding`` (or uses one not supported)."""


class _Inflater:
    """One gzip or deflate layer. deflate is zlib-wrapped by the RFC but raw from some servers."""

    def __init__(self, coding: str, step: int) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        self._step = step
        self._maybe_raw = not self._gzip  # decided by the first bytes, as browsers and httpx do
        self._inflate = self._new(zlib.MAX_WBITS | (16 if self._gzip else 0))

    @staticmethod
    def _new(wbits: int) -> zlib._Decompress:
        return zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                out = self._inflate.decompress(data, self._step)
            except zlib.error:
                if not self._maybe_raw:
                    raise
                self._maybe_raw = False
                self._inflate = self._new(-zlib.MAX_WBITS)
                continue
            self._maybe_raw = False
            data = self._inflate.unconsumed_tail
            if self._inflate.eof and self._inflate.unused_data:
                if not self._gzip:
                    raise zlib.error("data after the end of the deflate stream")
                data = self._inflate.unused_data + data  # the next gzip member
                self._inflate = self._new(zlib.MAX_WBITS | 16)
            if out:
                yield out

    def finish(self) -> bytes:
        tail = self._inflate.flush()
        if not self._inflate.eof:
            raise zlib.error("the compressed body ended before its end marker")
        return tail


class BoundedDecoder:
    """Undo ``content_encoding`` piece by piece, each piece at most ``step`` bytes.

    ``content_encoding`` is ``gzip``, ``deflate``, ``identity``, or a chain of them.

    :raises ContentDecodingError: an unsupported coding (at construction), or a body that does not
        decode (from :meth:`feed` or :meth:`finish`).
    """

    def __init__(self, content_encoding: str | None, step: int) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        unsupported = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
        if unsupported:
            raise ContentDecodingError(
                f"Content-Encoding {unsupported[0]!r} is not supported (asked for {ACCEPT_ENCODING})"
            )
        # Codings are listed in the order they were applied: undo the last one first.
        self._layers = [_Inflater(c, step) for c in reversed(codings)]

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield the decoded pieces of the next raw bytes."""
        try:
            yield from self._through(0, data)
        except zlib.error as err:
            raise ContentDecodingError(f"the body does not decode: {err}") from None

    def finish(self) -> Iterator[bytes]:
        """Yield the last decoded pieces; raise when a layer's stream is incomplete."""
        try:
            for index, layer in enumerate(self._layers):
                yield from self._through(index + 1, layer.finish())
        except zlib.error as err:
            raise ContentDecodingError(f"the body does not decode: {err}") from None

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        for piece in self._layers[index].feed(data):
            yield from self._through(index + 1, piece)
