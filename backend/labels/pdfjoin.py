"""Join reportlab PDFs into one, streaming: memory stays flat however many pages.

reportlab keeps every page of a document in memory until `save()` (its page streams are kept as
lists of strings), so a 100,000-label PDF made in one canvas costs hundreds of MB. The renderer
instead makes the PDF in chunks of a few thousand labels, each a small complete reportlab PDF,
and this joiner copies each chunk's objects into the output as soon as it is made: renumbered,
the chunk's own page tree hung under one root page tree (the PDF page tree may nest), its
catalog and info dropped. Only the object offsets (8 bytes each) stay in memory.

It reads what reportlab writes (a classic xref table, no object streams, direct stream lengths)
and refuses anything else. The output is deterministic: the same chunks give the same bytes, and
its /ID is the MD5 of everything before the trailer.
"""
from __future__ import annotations

import hashlib
import re
from array import array
from typing import BinaryIO

_REF = re.compile(rb"(\d+) 0 R\b")
_OBJ_HEAD = re.compile(rb"(\d+) 0 obj\b")
_STREAM_KW = re.compile(rb"\bstream\r?\n")
_COUNT = re.compile(rb"/Count (\d+)")

ROOT_CATALOG, ROOT_INFO, ROOT_PAGES = 1, 2, 3


def _pdf_text(value: str) -> bytes:
    """A PDF text string: literal for printable ASCII, UTF-16BE hex otherwise."""
    if value.isascii() and value.isprintable():
        return b"(" + value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode() + b")"
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode() + b">"


class PdfJoinError(ValueError):
    pass


class PdfJoiner:
    """`add()` complete PDFs (reportlab's) in order, then `close()`; writes to `out` as it goes."""

    def __init__(self, out: BinaryIO, title: str = "", producer: str = "chenpi-trace labels"):
        self.out = out
        self.pos = 0
        self.md5 = hashlib.md5()
        self.offsets = array("Q", [0, 0, 0, 0])  # index = object number; 0 unused
        self.kids: list[int] = []
        self.pages = 0
        self.closed = False
        self._write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        self._object(ROOT_CATALOG, b"<< /Type /Catalog /Pages %d 0 R /PageMode /UseNone >>" % ROOT_PAGES)
        info = b"<< /Producer " + _pdf_text(producer)
        if title:
            info += b" /Title " + _pdf_text(title)
        self._object(ROOT_INFO, info + b" >>")

    # -- writing ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.md5.update(data)
        self.pos += len(data)

    def _object(self, num: int, body: bytes) -> None:
        self.offsets[num] = self.pos
        self._write(b"%d 0 obj\n" % num + body + b"\nendobj\n")

    # -- reading one reportlab PDF --------------------------------------------------------------
    @staticmethod
    def _xref(pdf: bytes) -> tuple[dict[int, int], int, int, int]:
        """(object number → offset, xref offset, root number, info number)."""
        start = pdf.rfind(b"startxref")
        if start < 0:
            raise PdfJoinError("no startxref: not a complete PDF")
        xref_at = int(pdf[start + 9:].split()[0])
        if pdf[xref_at:xref_at + 4] != b"xref":
            raise PdfJoinError("only classic xref tables are supported")
        trailer_at = pdf.index(b"trailer", xref_at)
        lines = pdf[xref_at:trailer_at].split(b"\n")[1:]
        offsets: dict[int, int] = {}
        i = 0
        while i < len(lines):
            head = lines[i].split()
            i += 1
            if len(head) != 2:
                continue
            first, count = int(head[0]), int(head[1])
            for k in range(count):
                entry = lines[i + k].split()
                if entry[2] == b"n":
                    offsets[first + k] = int(entry[0])
            i += count
        trailer = pdf[trailer_at:start]
        root = re.search(rb"/Root (\d+) 0 R", trailer)
        info = re.search(rb"/Info (\d+) 0 R", trailer)
        if not root:
            raise PdfJoinError("trailer without /Root")
        return offsets, xref_at, int(root.group(1)), int(info.group(1)) if info else -1

    def add(self, pdf: bytes) -> int:
        """Copy one PDF's pages (and everything they use) into the output; returns its pages."""
        if self.closed:
            raise PdfJoinError("joiner already closed")
        offsets, xref_at, root, info = self._xref(pdf)
        order = sorted(offsets, key=offsets.get)
        ends = {n: (offsets[order[i + 1]] if i + 1 < len(order) else xref_at) for i, n in enumerate(order)}

        def body(n: int) -> bytes:
            chunk = pdf[offsets[n]:ends[n]]
            m = _OBJ_HEAD.match(chunk)
            if not m or int(m.group(1)) != n:
                raise PdfJoinError(f"object {n} is not where the xref says")
            end = chunk.rfind(b"endobj")
            return chunk[m.end():end].strip(b"\r\n ")

        catalog = body(root)
        pages_ref = re.search(rb"/Pages (\d+) 0 R", catalog)
        if not pages_ref:
            raise PdfJoinError("catalog without /Pages")
        pages_obj = int(pages_ref.group(1))
        skip = {root, info}
        mapping: dict[int, int] = {}
        for n in sorted(offsets):
            if n not in skip:
                mapping[n] = len(self.offsets)
                self.offsets.append(0)

        def renumber(m: re.Match) -> bytes:
            old = int(m.group(1))
            if old not in mapping:
                raise PdfJoinError(f"reference to object {old}, which is not copied")
            return b"%d 0 R" % mapping[old]

        count = 0
        for n in sorted(mapping):
            data = body(n)
            s = _STREAM_KW.search(data)
            head, tail = (data[:s.start()], data[s.start():]) if s else (data, b"")
            head = _REF.sub(renumber, head)
            if n == pages_obj:
                c = _COUNT.search(head)
                count = int(c.group(1)) if c else 0
                head = head.replace(b"<<", b"<< /Parent %d 0 R" % ROOT_PAGES, 1)
            self._object(mapping[n], head + (b"\n" + tail if tail and not head.endswith(b"\n") else tail))
        self.kids.append(mapping[pages_obj])
        self.pages += count
        return count

    def close(self) -> None:
        if self.closed:
            return
        kids = b" ".join(b"%d 0 R" % k for k in self.kids)
        self._object(ROOT_PAGES, b"<< /Type /Pages /Count %d /Kids [ %s ] >>" % (self.pages, kids))
        xref_at = self.pos
        n = len(self.offsets)
        self._write(b"xref\n0 %d\n0000000000 65535 f \n" % n)
        for block in range(1, n, 4096):  # in blocks: a 100,000-page roll has 200,000 entries
            self._write(b"".join(b"%010d 00000 n \n" % self.offsets[i] for i in range(block, min(block + 4096, n))))
        digest = self.md5.hexdigest().encode()
        self.out.write(b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /ID [ <%s> <%s> ] >>\nstartxref\n%d\n%%%%EOF\n"
                       % (n, ROOT_CATALOG, ROOT_INFO, digest, digest, xref_at))
        self.closed = True
