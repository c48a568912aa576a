"""Photos of check-ins: multipart upload with their own UUID, real images only, derivatives, EXIF
checks, and photos that arrive before their check-in."""
from __future__ import annotations

import io
import struct
import uuid
import zlib
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select

from backend.fieldwork.models import Photo
from backend.storage import get_storage
from backend.timeutil import SHANGHAI, as_utc
from tests.factories import checkin_json, jpeg_bytes

URL = "/api/v1/fieldwork/checkins"


@pytest.fixture
def inspector(make):
    return make.auth(make.token("inspector"))


@pytest.fixture
def admin(make):
    return make.auth(make.token("admin"))


@pytest.fixture
def plot(make):
    return make.plot()


def upload(client, headers, checkin_uuid, data: bytes, photo_uuid=None, filename="photo.jpg"):
    photo_uuid = photo_uuid or str(uuid.uuid4())
    return client.put(f"{URL}/{checkin_uuid}/photos/{photo_uuid}", headers=headers,
                      data={"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data")


def photos(session) -> int:
    return session.scalar(select(func.count()).select_from(Photo))


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height pixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_photo_is_stored_with_a_normalised_jpeg_and_a_thumbnail(client, session, inspector, plot):
    body = checkin_json(plot, photos_expected=1)
    client.post(URL, json=body, headers=inspector)
    big = Image.new("RGB", (1200, 800), (10, 200, 30))
    buf = io.BytesIO()
    big.save(buf, "PNG")
    r = upload(client, inspector, body["uuid"], buf.getvalue(), filename="IMG_0001.png")
    assert r.status_code == 201, r.json
    assert r.json["checkin_received"] is True and r.json["photos_expected"] == 1 and r.json["photos_arrived"] == 1
    photo = r.json["photo"]
    assert (photo["format"], photo["width"], photo["height"], photo["attached"]) == ("PNG", 1200, 800, True)
    row = session.scalar(select(Photo))
    store = get_storage()
    with store.open(row.original_key) as f:
        assert f.read() == buf.getvalue(), "the original is kept byte for byte"
    with store.open(row.jpeg_key) as f:
        assert Image.open(f).format == "JPEG"
    with store.open(row.thumb_key) as f:
        assert max(Image.open(f).size) <= 320
    out = client.get(f"{URL}/{body['uuid']}", headers=inspector).json
    assert out["photos_expected"] == 1 and out["photos_arrived"] == 1 and out["photos"][0]["uuid"] == photo["uuid"]
    thumb = client.get(f"/api/v1/fieldwork/photos/{photo['uuid']}/thumb", headers=inspector)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"


def test_exif_orientation_is_applied_to_the_normalised_jpeg(client, session, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    r = upload(client, inspector, body["uuid"], jpeg_bytes((64, 48), orientation=6))
    assert (r.json["photo"]["width"], r.json["photo"]["height"]) == (48, 64)
    jpeg = client.get(f"/api/v1/fieldwork/photos/{r.json['photo']['uuid']}/jpeg", headers=inspector)
    assert Image.open(io.BytesIO(jpeg.data)).size == (48, 64)


def test_a_retried_upload_never_duplicates_and_another_file_under_the_uuid_is_409(client, session, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    photo_uuid, data = str(uuid.uuid4()), jpeg_bytes()
    first = upload(client, inspector, body["uuid"], data, photo_uuid)
    again = upload(client, inspector, body["uuid"], data, photo_uuid)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["photo"]["sha256"] == first.json["photo"]["sha256"] and again.json["photos_arrived"] == 1
    other = upload(client, inspector, body["uuid"], jpeg_bytes((65, 48)), photo_uuid)
    assert other.status_code == 409 and other.json["reason"] == "fieldwork.photo_conflict"
    assert photos(session) == 1


def test_photos_may_arrive_before_their_check_in(client, session, inspector, admin, plot):
    body = checkin_json(plot, photos_expected=2)
    early = upload(client, inspector, body["uuid"], jpeg_bytes())
    assert early.status_code == 201
    assert early.json["checkin_received"] is False and early.json["photos_arrived"] == 1
    assert early.json["photo"]["attached"] is False
    r = client.post(URL, json=body, headers=inspector)
    assert r.json["photos_expected"] == 2 and r.json["photos_arrived"] == 1
    late = upload(client, inspector, body["uuid"], jpeg_bytes())
    assert late.json["photos_arrived"] == 2
    out = client.get(f"{URL}/{body['uuid']}", headers=admin).json
    assert out["photos_arrived"] == 2 and all(p["attached"] for p in out["photos"])


def test_early_photos_attach_through_a_batch_too(client, session, inspector, plot):
    body = checkin_json(plot, photos_expected=1)
    upload(client, inspector, body["uuid"], jpeg_bytes())
    r = client.post(URL + "/batch", json={"items": [body]}, headers=inspector).json
    assert r["items"][0]["checkin"]["photos_arrived"] == 1


def test_exif_time_and_gps_far_from_the_check_in_are_flagged_for_admins(client, session, inspector, admin, plot):
    body = checkin_json(plot)
    captured = as_utc(__import__("datetime").datetime.fromisoformat(body["captured_at"]))
    off_time = (captured + timedelta(hours=3)).astimezone(SHANGHAI).strftime("%Y:%m:%d %H:%M:%S")
    on_time = captured.astimezone(SHANGHAI).strftime("%Y:%m:%d %H:%M:%S")
    # One photo before the check-in (checked when it arrives), two after.
    far = upload(client, inspector, body["uuid"], jpeg_bytes(exif={"taken": off_time, "lat": 22.70, "lon": 113.03}))
    client.post(URL, json=body, headers=inspector)
    near = upload(client, inspector, body["uuid"], jpeg_bytes(exif={"taken": on_time, "lat": plot.lat, "lon": plot.lon}))
    assert near.json["photo"]["exif_lat"] == pytest.approx(plot.lat, abs=1e-4)
    assert near.json["photo"]["flags"] is None, "flags are for admins"
    out = client.get(f"{URL}/{body['uuid']}", headers=admin).json
    by_uuid = {p["uuid"]: p for p in out["photos"]}
    assert {f["code"] for f in by_uuid[far.json["photo"]["uuid"]]["flags"]} == {"exif_time_mismatch", "exif_gps_mismatch"}
    assert by_uuid[near.json["photo"]["uuid"]]["flags"] == []
    assert {f["code"] for f in out["flags"]} == {"exif_time_mismatch", "exif_gps_mismatch"}
    flagged = client.get(URL, query_string={"flagged": "true"}, headers=admin).json
    assert [c["uuid"] for c in flagged] == [body["uuid"]]


def test_an_exif_offset_is_honoured(client, inspector, admin, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    captured = as_utc(__import__("datetime").datetime.fromisoformat(body["captured_at"]))
    utc_text = captured.strftime("%Y:%m:%d %H:%M:%S")
    r = upload(client, inspector, body["uuid"], jpeg_bytes(exif={"taken": utc_text, "offset": "+00:00"}))
    assert r.json["photo"]["exif_taken_at"] == captured.astimezone(SHANGHAI).isoformat()
    out = client.get(f"{URL}/{body['uuid']}", headers=admin).json
    assert out["flags"] == []


@pytest.mark.parametrize("taken, offset", [("0001:01:01 00:00:00", None), ("0001:01:01 00:30:00", "+08:00"),
                                           ("9999:12:31 23:59:59", "-09:00")])
def test_an_exif_time_that_cannot_be_placed_in_utc_counts_as_absent(client, session, inspector, plot, taken, offset):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    exif = {"taken": taken, **({"offset": offset} if offset else {})}
    r = upload(client, inspector, body["uuid"], jpeg_bytes(exif=exif))
    assert r.status_code == 201, r.json
    assert r.json["photo"]["exif_taken_at"] is None
    assert photos(session) == 1


# --- bad photos ---------------------------------------------------------------------------------
def test_a_renamed_pdf_is_415(client, session, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    r = upload(client, inspector, body["uuid"], pdf, filename="photo.jpg")
    assert r.status_code == 415 and r.json["reason"] == "fieldwork.photo_unsupported"
    assert photos(session) == 0


def test_a_200_megapixel_png_bomb_is_refused_without_decoding(client, session, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    bomb = png_header(20_000, 10_000)
    assert len(bomb) < 200
    r = upload(client, inspector, body["uuid"], bomb, filename="bomb.png")
    assert r.status_code == 413 and r.json["reason"] == "fieldwork.photo_too_many_pixels"
    assert photos(session) == 0


def test_an_image_over_the_pixel_setting_but_under_pillows_own_limit_is_refused(client, session, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    r = upload(client, inspector, body["uuid"], png_header(10_000, 7_000), filename="big.png")
    assert r.status_code == 413 and "70,000,000" in r.json["message"]


def test_a_truncated_jpeg_is_422_damaged(client, session, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    whole = jpeg_bytes((400, 300))
    r = upload(client, inspector, body["uuid"], whole[: len(whole) // 2])
    assert r.status_code == 422 and r.json["reason"] == "fieldwork.photo_damaged"
    assert photos(session) == 0


def test_a_photo_over_the_size_cap_is_413(client, session, app, monkeypatch, inspector, plot):
    monkeypatch.setattr(app.config["CHENPI"], "PHOTO_MAX_BYTES", 1000)
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    r = upload(client, inspector, body["uuid"], jpeg_bytes((300, 300)))
    assert r.status_code == 413 and r.json["reason"] == "fieldwork.photo_too_large"
    assert photos(session) == 0


def test_an_upload_without_a_file_is_422(client, inspector):
    r = client.put(f"{URL}/{uuid.uuid4()}/photos/{uuid.uuid4()}", headers=inspector, data={},
                   content_type="multipart/form-data")
    assert r.status_code == 422


def test_a_photo_for_someone_elses_check_in_is_404_and_stores_nothing(client, session, make, inspector, plot):
    other = make.auth(make.token("inspector"))
    body = checkin_json(plot)
    client.post(URL, json=body, headers=other)
    r = upload(client, inspector, body["uuid"], jpeg_bytes())
    assert r.status_code == 404 and r.json["reason"] == "fieldwork.not_found"
    assert photos(session) == 0


def test_someone_elses_early_photo_does_not_attach_to_my_check_in(client, session, make, inspector, plot):
    other = make.auth(make.token("inspector"))
    body = checkin_json(plot)
    upload(client, other, body["uuid"], jpeg_bytes())
    r = client.post(URL, json=body, headers=inspector)
    assert r.json["photos_arrived"] == 0


def test_photo_files_are_only_for_those_who_see_the_check_in(client, make, inspector, plot):
    other = make.auth(make.token("inspector"))
    operator = make.auth(make.token("operator"))
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    photo = upload(client, inspector, body["uuid"], jpeg_bytes()).json["photo"]
    for headers in (other, operator):
        r = client.get(f"/api/v1/fieldwork/photos/{photo['uuid']}/original", headers=headers)
        assert r.status_code == 404
    assert client.get(f"/api/v1/fieldwork/photos/{photo['uuid']}/original", headers=inspector).status_code == 200


def test_the_sweep_deletes_only_old_files_no_photo_row_names(client, session, inspector, plot, tmp_path):
    import os
    import time

    from backend.fieldwork.service import sweep_orphan_photos
    from backend.storage import DirectoryStorage

    body = checkin_json(plot, photos_expected=1)
    client.post(URL, json=body, headers=inspector)
    assert upload(client, inspector, body["uuid"], jpeg_bytes()).status_code == 201
    row = session.scalar(select(Photo))
    store, day_ago = DirectoryStorage(tmp_path), time.time() - 86_400
    kept = [row.original_key, row.jpeg_key, row.thumb_key]
    lost_base = f"photos/{body['uuid']}/{uuid.uuid4()}-0123456789abcdef"  # its commit failed a day ago
    lost = [f"{lost_base}/original.jpg", f"{lost_base}/normal.jpg", f"{lost_base}/thumb.jpg"]
    young = f"photos/{uuid.uuid4()}/{uuid.uuid4()}-fedcba9876543210/original.jpg"  # an upload in flight
    for key in kept + lost + [young, "labels/batch-1/render-1.pdf"]:
        store.put(key, b"x")
        if key != young:
            os.utime(store.path(key), (day_ago, day_ago))
    assert sweep_orphan_photos(session, store, 3600, dry_run=True) == sorted(lost)
    assert all(store.exists(k) for k in lost)
    assert sweep_orphan_photos(session, store, 3600) == sorted(lost)
    assert not any(store.exists(k) for k in lost)
    assert all(store.exists(k) for k in kept + [young, "labels/batch-1/render-1.pdf"])
    assert sweep_orphan_photos(session, store, 3600) == []
    assert sweep_orphan_photos(session, DirectoryStorage(tmp_path / "empty"), 3600) == []
