"""Configuration from environment variables. `SETTINGS` is the one list of them: the README's
configuration table and the docker/compose test are checked against it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

# name, default, what it is for
SETTINGS: list[tuple[str, str, str]] = [
    ("DATABASE_URL", "", "PostgreSQL URL (`postgresql+psycopg://user:pw@host/db`); empty: a SQLite file `./var/chenpi.sqlite3`"),
    ("REDIS_URL", "", "Redis URL (`redis://host:6379/0`); empty: an in-process stand-in (fakeredis), jobs run in-process"),
    ("SECRET_KEY", "dev-insecure-change-me", "Key for HMACs (ID-number hashes); set a long random value in production"),
    ("PUBLIC_BASE_URL", "http://127.0.0.1:5000", "Public HTTPS base of the service; label QR codes point under it"),
    ("STORAGE_DIR", "var/storage", "Directory for label PDFs and photos"),
    ("MAX_CONTENT_LENGTH", str(16 * 1024 * 1024), "Largest request body in bytes (bigger answers 413)"),
    ("LOG_LEVEL", "INFO", "Python logging level"),
    ("LABEL_FONT", "", "TrueType font for label text (.ttf/.ttc); empty: the shipped GB 2312 subset of WenQuanYi Micro Hei"),
    ("LABEL_TEMPLATES_DIR", "", "Folder of label templates; empty: the repository's `label_templates/`"),
    ("LABEL_KEYS", "1:dev-insecure-label-key-change-me", "Label code keys as `id:secret,…` (id one character of 1-9/A-Z minus I L O U; secret ≥ 16 bytes); keep retired keys listed so their codes still resolve"),
    ("LABEL_ACTIVE_KEY", "1", "Key id that new label batches are issued under (must be in `LABEL_KEYS`)"),
    ("LABEL_MAX_PER_APPLICATION", "100000", "Most labels one application (申领) may ask for"),
    ("LABEL_MAX_PER_OPERATOR_YEAR", "1000000", "Most labels an operator may be approved in one calendar year"),
    ("LABEL_DEFAULT_TEMPLATE", "a4-3x8-70x37", "Template a label application uses when it names none"),
    ("PRINT_LEASE_SECONDS", "300", "How long a print agent holds a leased print job; unacknowledged, it returns to the queue"),
    ("RENDER_STALE_SECONDS", "120", "A label render job whose worker has not reported progress for this long is re-enqueued (its worker died)"),
    ("PHOTO_MAX_BYTES", str(15 * 1024 * 1024), "Largest check-in photo file in bytes (bigger answers 413)"),
    ("PHOTO_MAX_PIXELS", str(60_000_000), "Largest check-in photo in pixels, width × height (decompression-bomb limit; bigger answers 413)"),
    ("GEOFENCE_RADIUS_M", "300", "A check-in farther than this (metres, after GPS accuracy) from its target's registered point is flagged off-site"),
    ("GEOFENCE_POLYGON_MARGIN_M", "50", "The same for plots with a boundary polygon: metres outside the polygon, after GPS accuracy"),
    ("CHECKIN_LATE_SYNC_HOURS", "72", "A check-in received this many hours after its captured_at is flagged late"),
    ("HOST", "127.0.0.1", "Address `chenpi serve` binds (0.0.0.0 in docker)"),
    ("PORT", "5000", "Port `chenpi serve` binds"),
    ("WEB_CONCURRENCY", "", "gunicorn worker processes; empty: the CPU cores this process may use, plus one"),
    ("WEB_THREADS", "4", "threads per gunicorn worker (gthread)"),
    ("WEB_TIMEOUT", "30", "gunicorn worker timeout, seconds"),
    ("CHAIN_YIELD_CEILING_KG_PER_MU", "4000", "Fruit (kg) a plot without a verified yield may sell per 亩 and season before trades raise an over-quota alert"),
    ("CHAIN_MAX_PEEL_RATIO", "0.07", "Largest dried-peel output per kg of fruit input; a lot above it is refused (≈ 0.05 is normal)"),
    # consumer scans (backend/scans)
    ("SCAN_FAST_PATH", "1", "1: the resolver answers a scan of a label whose view is cached below Flask (backend/scans/fastpath.py: the same answer, about half the CPU); 0: every scan goes through the Flask route"),
    ("SCAN_VIEW_WARM_TTL", "604800", "Seconds the resolver's cached label views of newly activated labels live in Redis (warmed after the activation commits, so first scans read no database); about 0.5 KB of Redis memory a label"),
    ("SCAN_WARN_AFTER", "5", "The resolver page says 谨防假冒 once a code has been scanned more than this many times"),
    ("SCAN_ALERT_SCANS", "20", "Scans of one code that raise a too_many_scans alert"),
    ("SCAN_ALERT_DEVICES", "5", "Distinct devices scanning one code that raise a too_many_devices (cloned label) alert"),
    ("SCAN_TRAVEL_KMH", "300", "Speed (km/h) between two located scans of one code above which they raise impossible_travel"),
    ("SCAN_TRAVEL_MIN_KM", "50", "…when the two scans are at least this many km apart (GPS noise and neighbouring towns never alert)"),
    ("SCAN_FAKE_BURST", "10", "Never-issued codes from one client within SCAN_FAKE_WINDOW_S that raise a fake_burst alert and slow the client down"),
    ("SCAN_FAKE_WINDOW_S", "600", "Window (seconds) for SCAN_FAKE_BURST"),
    ("SCAN_RATE_PER_MIN", "60", "Resolver requests one client may make per minute (more answer 429 with Retry-After)"),
    ("SCAN_CRAWLER_RATE_PER_MIN", "6", "The same for a client past SCAN_FAKE_BURST (an enumerating crawler)"),
    ("SCAN_TRUSTED_PROXIES", "0", "Reverse proxies in front of the API whose X-Forwarded-For entries name the client (0: use the peer address); read only from a peer in SCAN_PROXY_NETWORKS"),
    ("SCAN_REGION_HEADER", "", "Request header in which the reverse proxy/CDN names the client's region (an adcode like 440705, or a Chinese place name like 江门市); a scan without a phone location is then placed there for impossible_travel. Empty: off. Set it only if the proxy overwrites the header on every request"),
    ("SCAN_PROXY_NETWORKS", "127.0.0.0/8,::1", "Addresses or CIDR networks (comma-separated) of the reverse proxies/CDN nodes that connect to the API: X-Forwarded-For and SCAN_REGION_HEADER are honoured only on requests whose peer is one of them (anyone else could name any address or region). Default: loopback only"),
    ("SCAN_REGION_TRAVEL_MIN_KM", "300", "impossible_travel involving a scan placed by its region (no phone location) needs at least this many km (IP locations often land in the provincial capital)"),
    ("PIN_MAX_ATTEMPTS", "20", "Wrong scratch-off PINs one label accepts within PIN_LOCK_SECONDS, from all clients; past them its PIN check answers 429 until the window ends. Higher than PIN_CLIENT_MAX_ATTEMPTS, so one client alone cannot lock a label"),
    ("PIN_CLIENT_MAX_ATTEMPTS", "5", "Wrong scratch-off PINs one client (address) may type within PIN_LOCK_SECONDS, whatever the labels; past them its PIN checks answer 429 until the window ends"),
    ("PIN_LOCK_SECONDS", "3600", "Window (seconds, from the first wrong PIN) for PIN_MAX_ATTEMPTS and PIN_CLIENT_MAX_ATTEMPTS"),
]
DEFAULTS = {name: default for name, default, _ in SETTINGS}


def setting(name: str) -> str:
    """An environment setting, or its documented default."""
    if name not in DEFAULTS:
        raise KeyError(f"{name} is not in backend.config.SETTINGS")
    value = os.environ.get(name, "")
    return value if value != "" else DEFAULTS[name]


@dataclass
class Config:
    """Everything the app reads from the environment. Tests build one directly."""

    DATABASE_URL: str = ""
    REDIS_URL: str = ""
    SECRET_KEY: str = DEFAULTS["SECRET_KEY"]
    PUBLIC_BASE_URL: str = DEFAULTS["PUBLIC_BASE_URL"]
    STORAGE_DIR: str = DEFAULTS["STORAGE_DIR"]
    MAX_CONTENT_LENGTH: int = int(DEFAULTS["MAX_CONTENT_LENGTH"])
    LOG_LEVEL: str = DEFAULTS["LOG_LEVEL"]
    PHOTO_MAX_BYTES: int = int(DEFAULTS["PHOTO_MAX_BYTES"])
    PHOTO_MAX_PIXELS: int = int(DEFAULTS["PHOTO_MAX_PIXELS"])
    GEOFENCE_RADIUS_M: float = float(DEFAULTS["GEOFENCE_RADIUS_M"])
    GEOFENCE_POLYGON_MARGIN_M: float = float(DEFAULTS["GEOFENCE_POLYGON_MARGIN_M"])
    CHECKIN_LATE_SYNC_HOURS: float = float(DEFAULTS["CHECKIN_LATE_SYNC_HOURS"])
    CHAIN_YIELD_CEILING_KG_PER_MU: Decimal = Decimal(DEFAULTS["CHAIN_YIELD_CEILING_KG_PER_MU"])
    CHAIN_MAX_PEEL_RATIO: Decimal = Decimal(DEFAULTS["CHAIN_MAX_PEEL_RATIO"])
    LABEL_KEYS: str = DEFAULTS["LABEL_KEYS"]
    LABEL_ACTIVE_KEY: str = DEFAULTS["LABEL_ACTIVE_KEY"]
    LABEL_MAX_PER_APPLICATION: int = int(DEFAULTS["LABEL_MAX_PER_APPLICATION"])
    LABEL_MAX_PER_OPERATOR_YEAR: int = int(DEFAULTS["LABEL_MAX_PER_OPERATOR_YEAR"])
    LABEL_DEFAULT_TEMPLATE: str = DEFAULTS["LABEL_DEFAULT_TEMPLATE"]
    PRINT_LEASE_SECONDS: int = int(DEFAULTS["PRINT_LEASE_SECONDS"])
    RENDER_STALE_SECONDS: float = float(DEFAULTS["RENDER_STALE_SECONDS"])

    @property
    def embedded_db(self) -> bool:
        return not self.DATABASE_URL or self.DATABASE_URL.startswith("sqlite")

    @property
    def embedded_redis(self) -> bool:
        return not self.REDIS_URL

    @classmethod
    def from_env(cls) -> "Config":
        db = setting("DATABASE_URL")
        for prefix in ("postgres://", "postgresql://"):
            if db.startswith(prefix):
                db = "postgresql+psycopg://" + db[len(prefix):]
        return cls(
            DATABASE_URL=db,
            REDIS_URL=setting("REDIS_URL"),
            SECRET_KEY=setting("SECRET_KEY"),
            PUBLIC_BASE_URL=setting("PUBLIC_BASE_URL").rstrip("/"),
            STORAGE_DIR=setting("STORAGE_DIR"),
            MAX_CONTENT_LENGTH=int(setting("MAX_CONTENT_LENGTH")),
            LOG_LEVEL=setting("LOG_LEVEL"),
            PHOTO_MAX_BYTES=int(setting("PHOTO_MAX_BYTES")),
            PHOTO_MAX_PIXELS=int(setting("PHOTO_MAX_PIXELS")),
            GEOFENCE_RADIUS_M=float(setting("GEOFENCE_RADIUS_M")),
            GEOFENCE_POLYGON_MARGIN_M=float(setting("GEOFENCE_POLYGON_MARGIN_M")),
            CHECKIN_LATE_SYNC_HOURS=float(setting("CHECKIN_LATE_SYNC_HOURS")),
            CHAIN_YIELD_CEILING_KG_PER_MU=Decimal(setting("CHAIN_YIELD_CEILING_KG_PER_MU")),
            CHAIN_MAX_PEEL_RATIO=Decimal(setting("CHAIN_MAX_PEEL_RATIO")),
            LABEL_KEYS=setting("LABEL_KEYS"),
            LABEL_ACTIVE_KEY=setting("LABEL_ACTIVE_KEY"),
            LABEL_MAX_PER_APPLICATION=int(setting("LABEL_MAX_PER_APPLICATION")),
            LABEL_MAX_PER_OPERATOR_YEAR=int(setting("LABEL_MAX_PER_OPERATOR_YEAR")),
            LABEL_DEFAULT_TEMPLATE=setting("LABEL_DEFAULT_TEMPLATE"),
            PRINT_LEASE_SECONDS=int(setting("PRINT_LEASE_SECONDS")),
            RENDER_STALE_SECONDS=float(setting("RENDER_STALE_SECONDS")),
        )

    def sqlalchemy_url(self) -> str:
        if self.DATABASE_URL:
            return self.DATABASE_URL
        path = Path("var").resolve() / "chenpi.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    def to_flask(self) -> dict:
        return {
            "SECRET_KEY": self.SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": self.sqlalchemy_url(),
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
            "MAX_CONTENT_LENGTH": self.MAX_CONTENT_LENGTH,
            "API_TITLE": "chenpi-trace",
            "API_VERSION": "v1",
            "OPENAPI_VERSION": "3.0.3",
            "OPENAPI_URL_PREFIX": "/api",
            "OPENAPI_JSON_PATH": "openapi.json",
            "OPENAPI_SWAGGER_UI_PATH": "docs",
            # Swagger UI assets are served by the app itself (backend/ops.py): no external CDN.
            "OPENAPI_SWAGGER_UI_URL": "/api/docs/static/",
            "CHENPI": self,
        }


def current_config() -> Config:
    """The running app's Config (services use it instead of reaching into Flask)."""
    from flask import current_app

    return current_app.config["CHENPI"]
