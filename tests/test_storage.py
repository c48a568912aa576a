import io

import pytest

from backend.storage import DirectoryStorage, sha256_of


def test_put_then_open_gives_the_same_bytes_and_their_sha256(tmp_path):
    store = DirectoryStorage(tmp_path)
    data = b"%PDF-1.4 " + bytes(range(256)) * 5000
    stored = store.put("labels/batch-1/sheet.pdf", io.BytesIO(data))
    assert stored.size == len(data)
    with store.open("labels/batch-1/sheet.pdf") as f:
        assert f.read() == data
    with store.open("labels/batch-1/sheet.pdf") as f:
        assert sha256_of(f) == stored.sha256


def test_a_failed_write_leaves_neither_a_file_nor_a_temp_file(tmp_path):
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("disk went away")
            return b"x" * 1000

    store = DirectoryStorage(tmp_path)
    with pytest.raises(OSError):
        store.put("photos/a.jpg", Broken())
    assert not store.exists("photos/a.jpg")
    assert list((tmp_path / "photos").iterdir()) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a//b", ".hidden", "a/.", "", "x" * 500, "a\x00b"])
def test_keys_cannot_escape_the_directory(tmp_path, key):
    with pytest.raises(ValueError):
        DirectoryStorage(tmp_path).put(key, b"x")
