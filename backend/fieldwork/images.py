"""Photo checks and derivatives, pure (bytes in, bytes and facts out; no database, no Flask).

Only real images pass: Pillow must identify the file as JPEG, PNG or WebP and `verify()` it;
the pixel count is checked from the header before anything is decoded (decompression bombs).
Derivatives: a normalised JPEG with the EXIF orientation applied, and a thumbnail.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from PIL import Image, ImageOps, UnidentifiedImageError

from ..timeutil import SHANGHAI

FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
THUMB_SIZE = (320, 320)
JPEG_QUALITY = 85

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME, DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 306, 36867, 36881


class ImageRejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Processed:
    format: str  # JPEG, PNG, WEBP
    extension: str
    width: int  # as displayed (orientation applied)
    height: int
    jpeg: bytes
    thumb: bytes
    taken_at: datetime | None
    lat: float | None
    lon: float | None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("fieldwork.photo_too_many_pixels", f"The image is too large to decode safely ({exc}).") from None
    except UnidentifiedImageError:
        raise ImageRejected("fieldwork.photo_unsupported", "The file is not an image Pillow recognises (JPEG, PNG or WebP expected).") from None
    if img.format not in FORMATS:
        raise ImageRejected("fieldwork.photo_unsupported", f"{img.format} images are not accepted; send JPEG, PNG or WebP.")
    width, height = img.size
    if width * height > max_pixels:
        raise ImageRejected("fieldwork.photo_too_many_pixels",
                            f"{width}×{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}.")
    return img


def process(data: bytes, max_pixels: int) -> Processed:
    """Check `data` and make the derivatives; raises ImageRejected with a catalogued reason."""
    img = _open(data, max_pixels)
    fmt = img.format
    try:
        img.verify()
        img = _open(data, max_pixels)  # verify() leaves the image unusable: open it again
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except ImageRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for damaged files
        raise ImageRejected("fieldwork.photo_damaged", f"The {fmt} file is damaged or truncated ({type(exc).__name__}).") from None
    exif = img.getexif()
    taken_at = exif_time(exif)
    lat, lon = exif_gps(exif)
    upright = ImageOps.exif_transpose(img)
    rgb = _to_rgb(upright)
    jpeg = io.BytesIO()
    rgb.save(jpeg, "JPEG", quality=JPEG_QUALITY)
    thumb_img = rgb.copy()
    thumb_img.thumbnail(THUMB_SIZE, Image.Resampling.BILINEAR, reducing_gap=2.0)
    thumb = io.BytesIO()
    thumb_img.save(thumb, "JPEG", quality=80)
    return Processed(fmt if fmt != "MPO" else "JPEG", FORMATS[fmt], rgb.width, rgb.height,
                     jpeg.getvalue(), thumb.getvalue(), taken_at, lat, lon)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def exif_time(exif: Image.Exif) -> datetime | None:
    """DateTimeOriginal (or DateTime) as UTC; without an offset tag, Asia/Shanghai is assumed."""
    sub = exif.get_ifd(EXIF_IFD)
    raw = sub.get(DATETIME_ORIGINAL) or exif.get(DATETIME)
    if not isinstance(raw, str):
        return None
    try:
        local = datetime.strptime(raw.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = sub.get(OFFSET_TIME_ORIGINAL)
    tz = SHANGHAI
    if isinstance(offset, str) and len(offset.strip("\x00")) == 6:
        try:
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        except ValueError:
            pass
    try:
        return local.replace(tzinfo=tz).astimezone(timezone.utc)
    except (OverflowError, ValueError):  # 0001:01:01 east of UTC or 9999:12:31 west of it: no usable time
        return None


def _degrees(dms) -> float:
    d, m, s = (float(x) for x in dms)
    return d + m / 60 + s / 3600


def exif_gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    gps = exif.get_ifd(GPS_IFD)
    try:
        lat, lon = _degrees(gps[2]), _degrees(gps[4])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None, None
    if str(gps.get(1, "N")).upper().startswith("S"):
        lat = -lat
    if str(gps.get(3, "E")).upper().startswith("W"):
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or lat != lat or lon != lon:
        return None, None
    return lat, lon
