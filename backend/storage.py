"""File storage for label PDFs and photos, behind a small interface so S3-compatible storage
can replace the directory later. Keys are relative paths like `labels/batch-12/0001.pdf`."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Stored:
    key: str
    size: int
    sha256: str


class Storage(Protocol):
    def put(self, key: str, source: BinaryIO | bytes) -> Stored: ...
    def open(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def listing(self, prefix: str) -> Iterator[tuple[str, float]]: ...


def check_key(key: str) -> str:
    if len(key) > 400 or not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"bad storage key {key!r}")
    return key


class DirectoryStorage:
    """Files under one directory. Writes are atomic (temp file, fsync, rename), so a reader or a
    crashed writer never sees half a file."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, source: BinaryIO | bytes) -> Stored:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(source):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Stored(key, size, digest.hexdigest())

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def listing(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, modification time as a Unix timestamp) of every file under `prefix` (a folder key);
        a writer's temporary files are not keys and are left out."""
        top = self.path(prefix.rstrip("/"))
        if not top.is_dir():
            return
        for path in top.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and _KEY.match(key):
                yield key, path.stat().st_mtime


def _chunks(source: BinaryIO | bytes) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield bytes(source)
        return
    while chunk := source.read(CHUNK):
        yield chunk


def sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def get_storage() -> Storage:
    """The running app's storage (STORAGE_DIR)."""
    from .config import current_config

    return DirectoryStorage(current_config().STORAGE_DIR)
