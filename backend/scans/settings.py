"""The scans domain's thresholds, from the settings table (backend/config.py): read from the
environment once per process (it cannot change under a running process), or at every call with
RELOAD (the tests change settings at run time)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import setting


@dataclass(frozen=True)
class Thresholds:
    warn_after: int  # page says 谨防假冒 past this many scans
    alert_scans: int  # too_many_scans alert at this many scans of one code
    alert_devices: int  # too_many_devices alert at this many distinct devices for one code
    travel_kmh: float  # impossible_travel above this speed between two located scans…
    travel_min_km: float  # …when they are at least this far apart
    fake_burst: int  # fake_burst alert at this many never-issued codes from one client…
    fake_window_s: int  # …within this many seconds
    rate_per_min: int  # resolver requests per client and minute
    crawler_rate_per_min: int  # the same for a client past the fake burst
    trusted_proxies: int  # reverse proxies whose X-Forwarded-For entries are trusted
    region_header: str = ""  # the proxy's header naming the client's region ("" off)
    region_travel_min_km: float = 300.0  # travel_min_km for scans placed by their region
    proxy_networks: str = "127.0.0.0/8,::1"  # peers allowed to name the region (SCAN_PROXY_NETWORKS)


RELOAD = False  # tests/conftest.py: read the environment at every call
_read: Thresholds | None = None


def thresholds() -> Thresholds:
    """The thresholds (a resolver scan reads them; 13 environment lookups cost ≈ 10 µs of it)."""
    global _read
    if RELOAD:
        return _from_environment()
    if _read is None:
        _read = _from_environment()
    return _read


def _from_environment() -> Thresholds:
    return Thresholds(
        warn_after=int(setting("SCAN_WARN_AFTER")),
        alert_scans=int(setting("SCAN_ALERT_SCANS")),
        alert_devices=int(setting("SCAN_ALERT_DEVICES")),
        travel_kmh=float(setting("SCAN_TRAVEL_KMH")),
        travel_min_km=float(setting("SCAN_TRAVEL_MIN_KM")),
        fake_burst=int(setting("SCAN_FAKE_BURST")),
        fake_window_s=int(setting("SCAN_FAKE_WINDOW_S")),
        rate_per_min=int(setting("SCAN_RATE_PER_MIN")),
        crawler_rate_per_min=int(setting("SCAN_CRAWLER_RATE_PER_MIN")),
        trusted_proxies=int(setting("SCAN_TRUSTED_PROXIES")),
        region_header=setting("SCAN_REGION_HEADER").strip(),
        region_travel_min_km=float(setting("SCAN_REGION_TRAVEL_MIN_KM")),
        proxy_networks=setting("SCAN_PROXY_NETWORKS"),
    )
