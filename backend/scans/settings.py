"""The scans domain's thresholds, from the settings table (backend/config.py): read from the
environment once per process (it cannot change under a running process), or at every call with
RELOAD (the tests change settings at run time)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


_NAMES = ("SCAN_WARN_AFTER", "SCAN_ALERT_SCANS", "SCAN_ALERT_DEVICES", "SCAN_TRAVEL_KMH", "SCAN_TRAVEL_MIN_KM",
          "SCAN_FAKE_BURST", "SCAN_FAKE_WINDOW_S", "SCAN_RATE_PER_MIN", "SCAN_CRAWLER_RATE_PER_MIN",
          "SCAN_TRUSTED_PROXIES", "SCAN_REGION_HEADER", "SCAN_REGION_TRAVEL_MIN_KM", "SCAN_PROXY_NETWORKS")


RELOAD = False  # tests/conftest.py: read the environment at every call
_read: Thresholds | None = None


def thresholds() -> Thresholds:
    """The thresholds (a resolver scan reads them; 13 environment lookups cost ≈ 10 µs of it)."""
    global _read
    if RELOAD or _read is None:
        current = _parsed(tuple(map(setting, _NAMES)))
        if RELOAD:
            return current
        _read = current
    return _read


@lru_cache(maxsize=8)
def _parsed(raw: tuple[str, ...]) -> Thresholds:
    (warn_after, alert_scans, alert_devices, travel_kmh, travel_min_km, fake_burst, fake_window_s, rate_per_min,
     crawler_rate_per_min, trusted_proxies, region_header, region_travel_min_km, proxy_networks) = raw
    return Thresholds(
        warn_after=int(warn_after),
        alert_scans=int(alert_scans),
        alert_devices=int(alert_devices),
        travel_kmh=float(travel_kmh),
        travel_min_km=float(travel_min_km),
        fake_burst=int(fake_burst),
        fake_window_s=int(fake_window_s),
        rate_per_min=int(rate_per_min),
        crawler_rate_per_min=int(crawler_rate_per_min),
        trusted_proxies=int(trusted_proxies),
        region_header=region_header.strip(),
        region_travel_min_km=float(region_travel_min_km),
        proxy_networks=proxy_networks,
    )
