"""Label codes: short, unguessable, case-insensitive, typo-checked (pure; no database).

Format (11 characters, Crockford base32 alphabet ``0-9 A-Z`` minus ``I L O U``)::

    K BBBBBBBBB C
    │ │         └ check character (weighted sum over GF(32); see below)
    │ └ body: 45 bits of HMAC-SHA256(key, "chenpi-label/v1" ‖ key id ‖ batch id ‖ serial)
    └ key id: which secret key made the body (32 slots, so keys can rotate)

Printed grouped as ``KBBB-BBBB-BBC``; input may be any case, with spaces or hyphens, in
full-width characters (a Chinese IME), and with the look-alikes ``O``→0, ``I``/``L``→1 mapped as
Crockford's decoding does. Every character is a QR alphanumeric character, so the upper-case URL
``PUBLIC_BASE_URL/V/CODE`` stays in the QR's alphanumeric mode (version 2 at level M for a base
URL of up to 27 characters).

Why a keyed HMAC rather than random codes: a re-render reproduces every code from
(key, batch, serial) alone, so a lost PDF can be rebuilt and a printed code can be re-derived and
checked (`verify`); and the key id inside lets the resolver tell a code of a retired or unknown
key without the database. An attacker who has seen any number of codes still has to guess the
45 body bits (the HMAC is a PRF): with N codes issued, one guess hits with probability N / 2**45
(10 million codes: about 1 in 3.5 million guesses), which the resolver's rate limits make
impractical. Codes are unique per (key, batch, serial) by construction of the input, but two
different inputs can collide in 45 bits (n codes on one key hold about n² / 2**46 colliding
pairs: the first expected near 8 million codes):
the issuing side keeps a unique index on the code and re-derives a colliding label with
``variant=1, 2, …`` (stored with the label).

The check character makes the weighted sum  Σ c_i · 2^(10-i)  (i = 0 … 10) over GF(32) zero:
it catches every single wrong character and every transposition of two characters (adjacent or
not), every twin error (aa→bb) and 31 of 32 random strings, without the database. It is the
Damm algorithm over the quasigroup x∘y = 2x ⊕ y in GF(32).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Container
from dataclasses import dataclass

from ..errors import AppError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
BODY_CHARS = 9  # 45 bits
CODE_LENGTH = 1 + BODY_CHARS + 1
BODY_BITS = 5 * BODY_CHARS
#: Key id reserved for sample and preview labels: never a production key, so a preview printed
#: by a merchant never resolves as genuine.
PREVIEW_KEY_ID = "0"
_DOMAIN = b"chenpi-label/v1"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_LOOKALIKE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = re.compile(r"[\s\-_.·]+")
_CANONICAL = re.compile(f"[{ALPHABET}]{{{CODE_LENGTH}}}")  # a code already in its canonical spelling
#: What QR alphanumeric mode can carry (ISO/IEC 18004 table 5).
QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


# --- GF(32) arithmetic for the check character (x^5 + x^2 + 1) -----------------------------------
def _gf_mul(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 0x20:
            a ^= 0b100101
    return r


_DOUBLE = [_gf_mul(v, 2) for v in range(32)]


def _check_value(values) -> int:
    """Damm over x∘y = 2x ⊕ y: the value d with (… ∘ d) = 0, i.e. d = 2·interim."""
    interim = 0
    for v in values:
        interim = _DOUBLE[interim] ^ v
    return _DOUBLE[interim]


def check_char(payload: str) -> str:
    """The check character for a canonical payload (key id + body)."""
    return ALPHABET[_check_value(_VALUE[c] for c in payload)]


# --- errors ---------------------------------------------------------------------------------------
class CodeError(AppError):
    """A code that cannot be one of ours; `problem` says why (length, char, check, key)."""

    def __init__(self, reason: str, problem: str, message: str):
        super().__init__(reason, message, {"code": [message]})
        self.problem = problem


def _malformed(problem: str, message: str) -> CodeError:
    return CodeError("labels.code_malformed", problem, message)


# --- making codes -----------------------------------------------------------------------------------
def make_code(key_id: str, key: bytes, batch_id: int, serial: int, *, variant: int = 0) -> str:
    """The canonical code of label `serial` of batch `batch_id` under key `key_id`.

    Deterministic: the same arguments give the same code, so re-rendering reproduces the codes.
    `variant` (0 unless the issuing side met a collision) perturbs the HMAC input.
    """
    if len(key_id) != 1 or key_id not in _VALUE:
        raise ValueError(f"key id must be one character of {ALPHABET!r}, not {key_id!r}")
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError("the code key must be at least 16 random bytes")
    if batch_id < 0 or serial < 0 or variant < 0:
        raise ValueError("batch id, serial and variant must not be negative")
    msg = b"%s\x00%s\x00%d\x00%d" % (_DOMAIN, key_id.encode(), batch_id, serial)
    if variant:
        msg += b"\x00%d" % variant
    digest = hmac.new(bytes(key), msg, hashlib.sha256).digest()
    bits = int.from_bytes(digest[:8], "big") >> (64 - BODY_BITS)
    body = "".join(ALPHABET[(bits >> (5 * (BODY_CHARS - 1 - i))) & 31] for i in range(BODY_CHARS))
    payload = key_id + body
    return payload + check_char(payload)


_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # 10 bits → two characters


def _contribution(position: int, value: int) -> int:
    """The check value of a payload holding `value` at `position` and zeros elsewhere. The check
    value is GF(2)-linear in the payload (doubling in GF(32) is), so a payload's check value is the
    XOR of its characters' contributions."""
    return _check_value([value if i == position else 0 for i in range(CODE_LENGTH - 1)])


#: per pair of body characters (positions 1-2, 3-4, 5-6, 7-8): their contribution, by 10 bits
_PAIR_CHECK = [[_contribution(p, v >> 5) ^ _contribution(p + 1, v & 31) for v in range(1024)] for p in (1, 3, 5, 7)]
_LAST_CHECK = [_contribution(9, v) for v in range(32)]


def make_codes(key_id: str, key: bytes, batch_id: int, serials, *, variant: int = 0) -> list[str]:
    """`make_code` for many serials of one batch: the same codes, several times faster (the
    arguments checked once, the one-shot C HMAC, two characters per table lookup), for issuing
    100,000 labels at once."""
    make_code(key_id, key, batch_id, 0, variant=variant)  # the same argument checks
    head = b"%s\x00%s\x00%d\x00" % (_DOMAIN, key_id.encode(), batch_id)
    tail = b"\x00%d" % variant if variant else b""
    key, digest, from_bytes, pairs = bytes(key), hmac.digest, int.from_bytes, _PAIRS
    key_check = _contribution(0, _VALUE[key_id])
    c1, c2, c3, c4 = _PAIR_CHECK
    out = []
    for serial in serials:
        if serial < 0:
            raise ValueError("batch id, serial and variant must not be negative")
        bits = from_bytes(digest(key, b"%s%d%s" % (head, serial, tail), "sha256")[:8], "big") >> (64 - BODY_BITS)
        a, b, c, d, e = bits >> 35, (bits >> 25) & 1023, (bits >> 15) & 1023, (bits >> 5) & 1023, bits & 31
        check = key_check ^ c1[a] ^ c2[b] ^ c3[c] ^ c4[d] ^ _LAST_CHECK[e]
        out.append(key_id + pairs[a] + pairs[b] + pairs[c] + pairs[d] + ALPHABET[e] + ALPHABET[check])
    return out


def verify(code: str, key_id: str, key: bytes, batch_id: int, serial: int, *, variant: int = 0) -> bool:
    """Whether `code` (any accepted spelling) is the code of that label, in constant time."""
    try:
        canonical = normalise(code)
    except CodeError:
        return False
    return hmac.compare_digest(canonical, make_code(key_id, key, batch_id, serial, variant=variant))


# --- the scratch-off PIN (second layer) -------------------------------------------------------------
PIN_DIGITS = 8
_PIN_DOMAIN = b"chenpi-pin/v1"
MAX_PIN_INPUT = 64  # longer input is never a PIN: refused without normalising it


def make_pin(key_id: str, key: bytes, batch_id: int, serial: int) -> str:
    """The 8-digit PIN printed under the scratch-off layer of label `serial` of batch `batch_id`.

    HMAC-SHA256 under the same label key as the code, with its own domain-separation prefix
    ("chenpi-pin/v1" instead of "chenpi-label/v1"): a re-render reproduces it, nothing secret is
    stored, and the printed code, serial or QR tell nothing about it without the key (the two
    HMAC outputs are independent). 64 bits reduced mod 10^8: the bias is below 10^-11.
    """
    if len(key_id) != 1 or key_id not in _VALUE:
        raise ValueError(f"key id must be one character of {ALPHABET!r}, not {key_id!r}")
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError("the code key must be at least 16 random bytes")
    if batch_id < 0 or serial < 0:
        raise ValueError("batch id and serial must not be negative")
    msg = b"%s\x00%s\x00%d\x00%d" % (_PIN_DOMAIN, key_id.encode(), batch_id, serial)
    digest = hmac.new(bytes(key), msg, hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10 ** PIN_DIGITS:0{PIN_DIGITS}d}"


_PIN_SEPARATORS = re.compile(r"[\s\-_.·]+")


def normalise_pin(text) -> str:
    """The 8 ASCII digits of a typed PIN, or an AppError naming the field `pin`.

    Full-width digits (a Chinese IME) and spaces or hyphens are accepted, as for codes (NFKC);
    other scripts' digits (Arabic-Indic, Devanagari…), letters and anything longer than
    `MAX_PIN_INPUT` characters are refused before any comparison.
    """
    if not isinstance(text, str):
        raise AppError("scans.pin_malformed", errors={"pin": ["Send the PIN as text: its 8 digits, e.g. \"01234567\"."]})
    if not text.strip():
        raise AppError("scans.pin_malformed", errors={"pin": ["Enter the 8-digit PIN under the scratch-off layer."]})
    if len(text) > MAX_PIN_INPUT:
        raise AppError("scans.pin_malformed", errors={"pin": [f"A PIN has {PIN_DIGITS} digits; this input has {len(text)} characters."]})
    digits = _PIN_SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    if not re.fullmatch(r"[0-9]+", digits, flags=re.ASCII):
        raise AppError("scans.pin_malformed", errors={"pin": ["A PIN is made of the digits 0-9 only."]})
    if len(digits) != PIN_DIGITS:
        raise AppError("scans.pin_malformed", errors={"pin": [f"A PIN has {PIN_DIGITS} digits; this one has {len(digits)}."]})
    return digits


# --- reading codes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParsedCode:
    code: str  # canonical, 11 upper-case characters
    key_id: str
    body: str

    def __str__(self) -> str:
        return self.code


def normalise(code: str) -> str:
    """The canonical spelling of a typed or scanned code, or a CodeError saying what is wrong."""
    if not isinstance(code, str):
        raise _malformed("char", "A label code is text.")
    if _CANONICAL.fullmatch(code):  # as printed in the QR: only the check character to verify
        text = code
    else:
        text = unicodedata.normalize("NFKC", code).strip()
        text = _SEPARATORS.sub("", text)
        for pos, ch in enumerate(text, 1):
            if not ch.isascii() or not ch.isalnum():
                raise _malformed("char", f"Character {ch!r} at position {pos} is not used in label codes.")
        text = text.upper().translate(_LOOKALIKE)
        if len(text) != CODE_LENGTH:
            raise _malformed("length", f"A label code has {CODE_LENGTH} characters; this one has {len(text)}.")
        for pos, ch in enumerate(text, 1):
            if ch not in _VALUE:  # only U is left
                raise _malformed("char", f"Character {ch!r} at position {pos} is not used in label codes.")
    if _check_value(_VALUE[c] for c in text[:-1]) != _VALUE[text[-1]]:
        raise CodeError("labels.code_mistyped", "check",
                        "The code's check character does not match: a character is mistyped or swapped.")
    return text


def parse(code: str, known_keys: Container[str] | None = None) -> ParsedCode:
    """Normalise and split a code; with `known_keys`, a code of another key id is refused."""
    text = normalise(code)
    key_id = text[0]
    if key_id == PREVIEW_KEY_ID and (known_keys is None or PREVIEW_KEY_ID not in known_keys):
        raise CodeError("labels.code_unknown_key", "key",
                        "This is a sample code from a label preview, not a real label.")
    if known_keys is not None and key_id not in known_keys:
        raise CodeError("labels.code_unknown_key", "key", f"No label key has id {key_id!r}.")
    return ParsedCode(text, key_id, text[1:-1])


def display(code: str) -> str:
    """How a code is printed for people: ``KBBB-BBBB-BBC``."""
    c = normalise(code)
    return f"{c[0:4]}-{c[4:8]}-{c[8:]}"


# --- the QR content --------------------------------------------------------------------------------
def qr_url(base: str, code: str) -> str:
    """``BASE/V/CODE`` in upper case, so the QR can use alphanumeric mode.

    Scheme and host are case-insensitive; the resolver serves ``/V/`` as well as ``/v/`` (and a
    base with a path prefix must be served case-insensitively too).
    """
    url = f"{base.rstrip('/')}/V/{normalise(code)}".upper()
    bad = sorted(set(url) - QR_ALPHANUMERIC)
    if bad:
        raise AppError("labels.base_url_invalid",
                       errors={"PUBLIC_BASE_URL": [f"{base!r} has characters the QR's alphanumeric mode "
                                                   f"cannot carry: {''.join(bad)!r}."]})
    return url


# --- the printed serial ------------------------------------------------------------------------------
_SERIAL_RE = re.compile(r"^\s*(\d{1,12})\s*[-‐‑–—/ ]\s*(\d{1,9})\s*$")


def format_serial(batch_id: int, serial: int) -> str:
    """The serial printed under the QR, for people to type: ``BBBBBB-SSSSSS`` (batch, sequence)."""
    if batch_id < 0 or serial < 0:
        raise ValueError("batch id and serial must not be negative")
    return f"{batch_id:06d}-{serial:06d}"


def parse_serial(text: str) -> tuple[int, int]:
    """(batch id, serial) from a typed printed serial (full-width digits and dashes accepted)."""
    m = _SERIAL_RE.match(unicodedata.normalize("NFKC", text or ""))
    if not m:
        raise AppError("labels.serial_malformed",
                       errors={"serial": [f"{text!r} is not a label serial like 000123-000045."]})
    return int(m.group(1)), int(m.group(2))
