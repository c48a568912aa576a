"""The label code keys (LABEL_KEYS, LABEL_ACTIVE_KEY): parsed once per configuration."""
from __future__ import annotations

from functools import lru_cache

from .. import codes


@lru_cache(maxsize=8)
def parse_keys(spec: str) -> dict[str, bytes]:
    """`id:secret,id:secret` → {id: secret bytes}; a ValueError says what is wrong."""
    keys: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key_id, sep, secret = part.partition(":")
        key_id = key_id.strip().upper()
        if not sep or len(key_id) != 1 or key_id not in codes.ALPHABET or key_id == codes.PREVIEW_KEY_ID:
            raise ValueError(f"LABEL_KEYS: {key_id!r} is not a key id (one of {codes.ALPHABET[1:]})")
        if len(secret.encode()) < 16:
            raise ValueError(f"LABEL_KEYS: the secret of key {key_id!r} is shorter than 16 bytes")
        if key_id in keys:
            raise ValueError(f"LABEL_KEYS: key {key_id!r} is listed twice")
        keys[key_id] = secret.encode()
    if not keys:
        raise ValueError("LABEL_KEYS is empty")
    return keys


def all_keys(config=None) -> dict[str, bytes]:
    from ...config import current_config

    return parse_keys((config or current_config()).LABEL_KEYS)


def active_key(config=None) -> tuple[str, bytes]:
    from ...config import current_config

    config = config or current_config()
    keys = parse_keys(config.LABEL_KEYS)
    key_id = config.LABEL_ACTIVE_KEY.strip().upper()
    if key_id not in keys:
        raise ValueError(f"LABEL_ACTIVE_KEY {key_id!r} is not in LABEL_KEYS")
    return key_id, keys[key_id]


def key_for(key_id: str, config=None) -> bytes:
    """The secret of key `key_id` (a batch's), or a ValueError naming the missing key."""
    keys = all_keys(config)
    if key_id not in keys:
        raise ValueError(f"LABEL_KEYS has no key {key_id!r}: keep retired keys listed so their labels still render and verify")
    return keys[key_id]
