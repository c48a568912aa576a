"""Label codes: unguessable, short, case-insensitive, typo-checked, key id inside (pure)."""
from __future__ import annotations

import itertools
import random

import pytest

from backend.labels import codes
from backend.labels.codes import ALPHABET, CODE_LENGTH, CodeError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def code(batch=42, serial=7, key_id="A", key=KEY, **kw):
    return codes.make_code(key_id, key, batch, serial, **kw)


def test_a_code_is_eleven_characters_of_the_lookalike_free_alphabet():
    c = code()
    assert len(c) == CODE_LENGTH == 11
    assert set(c) <= set(ALPHABET)
    assert not set("ILOU") & set(ALPHABET)
    assert c[0] == "A"
    assert codes.parse(c).key_id == "A" and codes.parse(c).body == c[1:-1]


def test_every_code_character_is_qr_alphanumeric():
    assert set(ALPHABET) <= codes.QR_ALPHANUMERIC


def test_the_same_label_always_gets_the_same_code_and_others_differ():
    assert code() == code()
    many = {code(serial=s) for s in range(5000)}
    assert len(many) == 5000
    assert code(batch=1) != code(batch=2)
    assert code(key=OTHER_KEY) != code()
    assert code(variant=1) != code()


def test_without_the_key_the_body_is_unpredictable():
    # 45 body bits: every bit position takes both values and is roughly balanced
    bodies = [int("".join(f"{ALPHABET.index(ch):05b}" for ch in code(serial=s)[1:-1]), 2) for s in range(4000)]
    for bit in range(codes.BODY_BITS):
        ones = sum((b >> bit) & 1 for b in bodies)
        assert 1700 < ones < 2300, bit
    assert codes.BODY_BITS >= 40


def test_verify_accepts_only_the_right_label_and_key():
    c = code()
    assert codes.verify(c.lower(), "A", KEY, 42, 7)
    assert not codes.verify(c, "A", KEY, 42, 8)
    assert not codes.verify(c, "A", OTHER_KEY, 42, 7)
    assert not codes.verify("garbage", "A", KEY, 42, 7)


@pytest.mark.parametrize("bad", [b"short", "", 123])
def test_keys_and_arguments_are_checked(bad):
    with pytest.raises((ValueError, TypeError)):
        codes.make_code("A", bad, 1, 1)


def test_key_id_must_be_one_alphabet_character():
    for kid in ("", "AB", "I", "a", "-"):
        with pytest.raises(ValueError):
            codes.make_code(kid, KEY, 1, 1)


def test_lowercase_spaces_hyphens_and_fullwidth_input_normalise():
    c = code()
    pretty = codes.display(c)
    assert pretty.count("-") == 2 and pretty.replace("-", "") == c
    assert codes.normalise(c.lower()) == c
    assert codes.normalise(f"  {pretty.lower()} ") == c
    assert codes.normalise(" ".join(c)) == c
    fullwidth = "".join(chr(ord(ch) + 0xFEE0) for ch in c)  # what a Chinese IME types
    assert codes.normalise(fullwidth) == c


def test_lookalikes_o_i_l_read_as_zero_and_one():
    c = next(x for x in (code(serial=s) for s in range(500)) if "0" in x[1:] and "1" in x[1:])
    typed = c[0] + c[1:].replace("0", "O").replace("1", "I")
    assert codes.normalise(typed) == c
    assert codes.normalise(c[0] + c[1:].replace("1", "l")) == c


def test_u_and_symbols_and_other_scripts_are_refused():
    c = code()
    for bad in (c[:5] + "U" + c[6:], c[:5] + "#" + c[6:], c[:5] + "陈" + c[6:], c[:5] + "ı" + c[6:],
                c[:5] + "\u0410" + c[6:]):  # Cyrillic A looks like A
        with pytest.raises(CodeError) as err:
            codes.normalise(bad)
        assert err.value.reason == "labels.code_malformed" and err.value.problem == "char"
        assert err.value.status == 422 and "code" in err.value.errors


@pytest.mark.parametrize("text", ["", "A", "A1234567890123", "ABCDEFGHJK"])
def test_wrong_length_is_refused(text):
    with pytest.raises(CodeError) as err:
        codes.normalise(text)
    assert err.value.problem == "length"
    assert "11 characters" in err.value.message


def test_every_single_character_typo_is_caught():
    c = code()
    for pos in range(CODE_LENGTH):
        for ch in ALPHABET:
            if ch == c[pos]:
                continue
            typo = c[:pos] + ch + c[pos + 1:]
            with pytest.raises(CodeError) as err:
                codes.normalise(typo)
            assert err.value.reason == "labels.code_mistyped"


def test_every_swap_of_two_characters_is_caught():
    for serial in range(30):
        c = code(serial=serial)
        for i, j in itertools.combinations(range(CODE_LENGTH), 2):
            if c[i] == c[j]:
                continue
            swapped = list(c)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            with pytest.raises(CodeError):
                codes.normalise("".join(swapped))


def test_forged_codes_fail_the_check_31_times_in_32():
    rng = random.Random(5)
    forged = ["".join(rng.choice(ALPHABET) for _ in range(CODE_LENGTH)) for _ in range(6400)]
    passed = 0
    for f in forged:
        try:
            codes.normalise(f)
            passed += 1
        except CodeError as err:
            assert err.reason == "labels.code_mistyped"
    assert 120 < passed < 290  # ≈ 1/32 of 6,400 = 200


def test_a_forged_code_with_a_valid_check_character_still_fails_verification():
    payload = "A" + "7" * 9
    forged = payload + codes.check_char(payload)
    assert codes.normalise(forged) == forged  # well-formed …
    assert not any(codes.verify(forged, "A", KEY, 42, s) for s in range(2000))  # … but no label's


def test_unknown_and_preview_key_ids_are_refused():
    c = code(key_id="B")
    assert codes.parse(c, known_keys={"A", "B"}).key_id == "B"
    with pytest.raises(CodeError) as err:
        codes.parse(c, known_keys={"A"})
    assert err.value.reason == "labels.code_unknown_key" and err.value.problem == "key"
    preview = code(key_id=codes.PREVIEW_KEY_ID)
    with pytest.raises(CodeError) as err:
        codes.parse(preview)
    assert "preview" in err.value.message


def test_non_text_input_is_refused_cleanly():
    with pytest.raises(CodeError):
        codes.normalise(None)  # type: ignore[arg-type]


def test_qr_url_is_upper_case_and_alphanumeric():
    c = code()
    url = codes.qr_url("https://trace.example.cn/", c.lower())
    assert url == f"HTTPS://TRACE.EXAMPLE.CN/V/{c}"
    assert set(url) <= codes.QR_ALPHANUMERIC
    assert codes.qr_url("http://127.0.0.1:5000", c).startswith("HTTP://127.0.0.1:5000/V/")


def test_a_base_url_outside_qr_alphanumeric_is_refused():
    from backend.errors import AppError

    with pytest.raises(AppError) as err:
        codes.qr_url("https://trace.example.cn/a_b?x=1", code())
    assert err.value.reason == "labels.base_url_invalid"
    with pytest.raises(CodeError):
        codes.qr_url("https://trace.example.cn", "not-a-code")


def test_printed_serials_round_trip_and_tolerate_typing():
    assert codes.format_serial(123, 45) == "000123-000045"
    assert codes.parse_serial("000123-000045") == (123, 45)
    assert codes.parse_serial(" 123 – 45 ") == (123, 45)
    assert codes.parse_serial("１２３－４５") == (123, 45)
    from backend.errors import AppError

    for bad in ("", "123", "12a-4", "1-2-3"):
        with pytest.raises(AppError) as err:
            codes.parse_serial(bad)
        assert err.value.reason == "labels.serial_malformed"


@pytest.mark.parametrize("key_id,variant", [("1", 0), ("Z", 0), ("7", 3)])
def test_make_codes_gives_make_codes_codes_for_many_serials(key_id, variant):
    serials = [0, 1, 2, 999_999, *range(40_000, 45_000)]
    many = codes.make_codes(key_id, KEY, 123_456, serials, variant=variant)
    assert many == [codes.make_code(key_id, KEY, 123_456, s, variant=variant) for s in serials]
    assert all(codes.normalise(c) == c for c in many[:50])  # check characters hold


def test_make_codes_refuses_what_make_code_refuses():
    with pytest.raises(ValueError):
        codes.make_codes("I", KEY, 1, [1])
    with pytest.raises(ValueError):
        codes.make_codes("1", b"short", 1, [1])
    with pytest.raises(ValueError):
        codes.make_codes("1", KEY, 1, [1, -2])
