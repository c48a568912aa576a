"""QR symbols for labels: segno's matrix with a fixed mask, as run-length rectangles.

segno spends about 80 % of its time choosing the mask; a fixed mask makes a code ≈ 0.7 ms.
Mask 3 is the fixed choice: over 400 label URLs (``HTTPS://TRACE.EXAMPLE.CN/V/`` + code, version
2-M) it had the lowest mean and worst-case ISO 18004 penalty of the eight masks (1,162 / 1,298
against 1,193–1,240 / 1,324–1,403) and was itself the best mask for 53 % of them.

The modules that are the same in every symbol of one version, error level and mask (finder,
separator, timing and alignment patterns, format and version information) are the *function
region*; the renderer draws them once in a form and only the data region per label.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import segno

FIXED_MASK = 3
ERROR_LEVELS = ("L", "M", "Q", "H")
_RUN = re.compile(rb"\x01+")

# Alignment pattern centre coordinates by version (ISO/IEC 18004 annex E).
_ALIGN = {
    1: (), 2: (6, 18), 3: (6, 22), 4: (6, 26), 5: (6, 30), 6: (6, 34), 7: (6, 22, 38), 8: (6, 24, 42),
    9: (6, 26, 46), 10: (6, 28, 50), 11: (6, 30, 54), 12: (6, 32, 58), 13: (6, 34, 62),
    14: (6, 26, 46, 66), 15: (6, 26, 48, 70), 16: (6, 26, 50, 74), 17: (6, 30, 54, 78),
    18: (6, 30, 56, 82), 19: (6, 30, 58, 86), 20: (6, 34, 62, 90),
}
MAX_VERSION = max(_ALIGN)


def modules(version: int) -> int:
    return 17 + 4 * version


@dataclass(frozen=True)
class Symbol:
    version: int
    size: int  # modules per side, without quiet zone
    #: the rows joined by a 0 byte, one byte (0/1) per module, row 0 at the top
    cells: bytes

    def runs(self, region: bytes | None = None) -> list[tuple[int, int, int]]:
        """(column, row-from-top, length) of each horizontal run of dark modules (in `region`)."""
        data = self.cells if region is None else (
            (int.from_bytes(self.cells, "big") & _as_int(region)).to_bytes(len(self.cells), "big"))
        stride = self.size + 1
        return [(s % stride, s // stride, e - s) for s, e in (m.span() for m in _RUN.finditer(data))]


@lru_cache(maxsize=64)
def _as_int(cells: bytes) -> int:
    return int.from_bytes(cells, "big")


def encode(content: str, error: str = "M", max_version: int = MAX_VERSION) -> Symbol:
    """The smallest symbol for `content` at `error` with the fixed mask (ValueError if larger
    than `max_version`)."""
    try:
        qr = segno.make_qr(content, error=error, mask=FIXED_MASK, boost_error=False)
    except segno.DataOverflowError as exc:
        raise ValueError(str(exc)) from None
    version = qr.version
    if not isinstance(version, int) or version > max_version:
        raise ValueError(f"{content!r} needs QR version {version} at level {error}; at most {max_version} fits")
    return Symbol(version, len(qr.matrix), b"\x00".join(bytes(row) for row in qr.matrix))


@lru_cache(maxsize=64)
def function_region(version: int) -> bytes:
    """Cells (same layout as Symbol.cells) that are 1 in the function region of `version`."""
    n = modules(version)
    grid = [bytearray(n) for _ in range(n)]

    def fill(r0, c0, h, w):
        for r in range(max(r0, 0), min(r0 + h, n)):
            for c in range(max(c0, 0), min(c0 + w, n)):
                grid[r][c] = 1

    # finders with their separators, and the format information beside them
    fill(0, 0, 9, 9)
    fill(0, n - 8, 9, 8)
    fill(n - 8, 0, 8, 9)
    # timing patterns
    fill(6, 0, 1, n)
    fill(0, 6, n, 1)
    # alignment patterns (not over the finders)
    centres = _ALIGN[version]
    for r in centres:
        for c in centres:
            if (r < 9 and c < 9) or (r < 9 and c > n - 9) or (r > n - 9 and c < 9):
                continue
            fill(r - 2, c - 2, 5, 5)
    # version information
    if version >= 7:
        fill(0, n - 11, 6, 3)
        fill(n - 11, 0, 3, 6)
    return b"\x00".join(bytes(row) for row in grid)


@lru_cache(maxsize=64)
def data_region(version: int) -> bytes:
    f = function_region(version)
    n = modules(version)
    out = bytearray(b ^ 1 for b in f)
    for r in range(1, n):  # the row separators stay 0
        out[r * (n + 1) - 1] = 0
    return bytes(out)


def function_part(symbol: Symbol) -> bytes:
    """The symbol's cells in the function region (equal for every symbol of one version)."""
    mask = function_region(symbol.version)
    return (int.from_bytes(symbol.cells, "big") & _as_int(mask)).to_bytes(len(mask), "big")
