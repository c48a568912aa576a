"""The consumer's check of a label's scratch-off PIN (POST /v/{code}/pin): once, race-safe,
with wrong attempts limited per client and per code.

Plain functions over a session and a Redis client (no Flask request objects). The PIN itself is
the labels domain's (`labels.codes.make_pin`, `labels.service.pins`); this module adds what the
consumer meets: the code's checks, the warnings the resolver gives, the attempt limits and the
answer (verdict, title, warning) the page and the JSON show.

The label is read through the resolver's own view (`service.find_label_reported`, one query, or
its current copy in Redis, `viewcache`), so what the resolver warns about is not checked here
either: a voided, lost, stolen or never-activated label (409 `scans.pin_label_state`), and a
code inspectors reported or with an open fraud alert (409 `scans.pin_label_flagged`, verdict
`warn`): a PIN answer would read as proof of a genuine label.

Attempts: every check of a well-formed PIN on a label that has one takes an attempt from the
client's counter (`pin:{c:HASH}:tries`, all codes) and then the code's (`pin:{CODE}:tries`),
INCR in Redis, each expiring PIN_LOCK_SECONDS after its first, before the PIN is compared, so
concurrent guesses cannot exceed the limits. A correct PIN clears the code's counter and gives
the client's attempt back (it counts wrong PINs). Past PIN_CLIENT_MAX_ATTEMPTS the client is
locked (429 `scans.pin_client_locked`, costing the code nothing); past PIN_MAX_ATTEMPTS, set
higher, the code is (429 `scans.pin_locked`), so one client alone cannot keep a code locked.
Without Redis there is no attempt limit, so no check: 503.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from ..config import setting
from ..errors import CATALOG, AppError
from ..labels import codes
from . import counters, rules, viewcache
from .service import REDIS_DOWN, Client, find_label_reported, known_keys
from .settings import Thresholds

log = logging.getLogger(__name__)

TITLES = {
    "first": "正品 · 验证码首次验证",
    "repeat": "验证码已被验证过",
    "mismatch": "验证码不正确",
    "locked": "验证码错误次数过多",
    "no_pin": "此标签没有刮开验证码",
    "unknown": "查无此码",
    "check_code": "请核对编码",
    "bad_pin": "请输入 8 位数字验证码",
    "inactive": rules.TITLES["inactive"],
    "voided": rules.TITLES["voided"],
    "lost": rules.TITLES["lost"],
    "stolen": rules.TITLES["stolen"],
    "warn": rules.TITLES["warn"],
    "unavailable": "暂时无法验证",
    "rate_limited": rules.TITLES["rate_limited"],
}
#: verdicts a consumer can trust (the rest say why not, or what to do)
GENUINE = ("first",)
#: why a code with an open fraud alert (scan:{CODE}:flag) warns, as on the resolver
FLAGGED = "此码已有未处理的异常查询记录"


@dataclass(frozen=True)
class PinSettings:
    max_attempts: int  # wrong PINs per code in the window
    lock_seconds: int
    client_max_attempts: int = 5  # wrong PINs per client (all codes) in the window


def pin_settings() -> PinSettings:
    return PinSettings(max_attempts=max(1, int(setting("PIN_MAX_ATTEMPTS"))),
                       lock_seconds=max(1, int(setting("PIN_LOCK_SECONDS"))),
                       client_max_attempts=max(1, int(setting("PIN_CLIENT_MAX_ATTEMPTS"))))


def tries_key(code: str) -> str:
    """pin:{CODE}:tries — in the code's hash slot, outside the scan counters' key space (so
    `chenpi scans rebuild-counters` leaves running locks alone)."""
    return f"pin:{{{code}}}:tries"


def client_tries_key(client: str) -> str:
    """pin:{c:HASH}:tries — one client's wrong PINs, whatever the code (the client's hash slot)."""
    return f"pin:{{c:{client}}}:tries"


@dataclass
class PinResult:
    verdict: str
    status: int = 200
    reason: str | None = None  # the error catalog's, for 4xx/5xx
    errors: dict | None = None
    code: str | None = None  # canonical
    label: object | None = None  # labels.service.LabelView
    verified_at: datetime | None = None
    same_device: bool | None = None
    attempts_left: int | None = None
    retry_after: int | None = None
    reasons: list[str] = field(default_factory=list)  # for warn: why the resolver warns
    extra: dict = field(default_factory=dict)

    def warning(self) -> str | None:
        v = self.verdict
        at = rules.shanghai(self.verified_at) if self.verified_at else None
        if v == "first":
            return "验证码正确:这是该标签的首次验证,可放心购买。验证时间已记录,之后再验证会显示本次时间。"
        if v == "repeat":
            if self.same_device:
                return f"您已于 {at} 验证过此验证码,结果为正品。"
            return (f"此验证码已于 {at} 被验证过。如果您刚刚刮开涂层,这可能是仿冒品:"
                    "请向商家核实,或致电新会陈皮行业协会举报。")
        if v == "mismatch":
            left = self.attempts_left or 0
            more = f"还可再试 {left} 次。" if left else "错误次数已达上限,此标签暂时无法验证,请稍后再试。"
            return f"验证码与此标签不符,请核对刮开涂层下的 8 位数字。{more}"
        if v == "locked":
            minutes = max(1, -(-(self.retry_after or 60) // 60))
            if self.reason == "scans.pin_client_locked":
                return f"您输入错误验证码的次数过多,验证已暂时锁定,请约 {minutes} 分钟后再试。扫码查询不受影响。"
            return f"此标签的验证码错误次数过多,已暂时锁定,请约 {minutes} 分钟后再试。"
        if v == "warn":
            why = ";".join(self.reasons) or FLAGGED
            return (f"谨防假冒!{why}。此标签的验证码不能作为正品凭证,未予验证。"
                    "请向商家核实,或致电新会陈皮行业协会举报。")
        if v == "no_pin":
            return "此标签没有刮开验证码,请直接以扫码结果为准。"
        if v == "bad_pin":
            return "验证码是刮开涂层下的 8 位数字,请重新输入。"
        if v == "unavailable":
            return "验证服务暂时不可用,请稍后再试。扫码查询不受影响。"
        if v == "rate_limited":
            return f"查询过于频繁,请 {self.retry_after or 60} 秒后再试。"
        if v == "check_code":
            return "编码有误:请核对标签上的 11 位编码后重新输入。"
        return rules.warning(v, 0, None, [])

    def to_dict(self) -> dict:
        lab = self.label
        message = CATALOG[self.reason][1] if self.reason else None
        return {
            "verdict": self.verdict,
            "genuine": self.verdict in GENUINE or (self.verdict == "repeat" and bool(self.same_device)),
            "title": TITLES[self.verdict],
            "warning": self.warning(),
            "code": self.code,
            "code_display": f"{self.code[0:4]}-{self.code[4:8]}-{self.code[8:]}" if self.code else None,
            "verified_at": self.verified_at,
            "same_device": self.same_device,
            "attempts_left": self.attempts_left,
            "retry_after": self.retry_after,
            "label": None if lab is None else {
                "serial": lab.serial, "state": lab.state, "product": lab.product,
                "operator": {"name": lab.operator_name, "credit_code": lab.credit_code}},
            "reason": self.reason,
            "message": message,
            "errors": self.errors,
        }


def _fail(verdict: str, reason: str, **kw) -> PinResult:
    return PinResult(verdict, status=CATALOG[reason][0], reason=reason, **kw)


def verify(session, r, code_text: str, pin_text, who: Client, t: Thresholds, ps: PinSettings | None = None) -> PinResult:
    """Check a PIN typed for the label `code_text`; record the first correct one.

    Order: the client's rate limit (the resolver's; its round trip also fetches the code's
    cached label view and alert flag), the code's spelling, the PIN's form (8 digits), the label
    (查无此码, no PIN, its state, inspectors' reports or an open alert), the client's and then the
    code's attempt counters, then the constant-time comparison.
    """
    ps = ps or pin_settings()
    code, code_error = None, None
    if not isinstance(code_text, str) or len(code_text) > 64:
        code_error = ("labels.code_malformed", {"code": ["A label code has 11 characters."]})
    else:
        try:
            code = codes.parse(code_text, known_keys()).code
        except codes.CodeError as err:
            code_error = (err.reason, err.errors)
    fetched = None  # the code's alert flag and cached view (viewcache), fetched with the rate limit
    if r is not None:
        extra = [counters.code_key(code, "flag")] if code else []
        try:
            wait, fetched = counters.rate_check_and_get(r, who.client, t.rate_per_min, t.crawler_rate_per_min,
                                                        t.fake_burst, extra, view=code)
        except REDIS_DOWN:
            wait, fetched = None, None  # the attempt counters below answer 503
        if wait is not None:
            return _fail("rate_limited", "scans.rate_limited", retry_after=wait)
    if code_error is not None:
        return _fail("check_code", code_error[0], errors=code_error[1])
    try:
        pin = codes.normalise_pin(pin_text)
    except AppError as err:
        return _fail("bad_pin", err.reason, errors=err.errors, code=code)
    from ..labels.service.pins import pin_matches, record_verification

    # the resolver's view (one query, or Redis's current copy): the label and inspectors' reports
    label, reported, _ = viewcache.through(r, code, lambda: find_label_reported(session, code),
                                           fetched[1] if fetched else None)
    flagged = bool(fetched and fetched[0] is not None)
    if label is None:
        _count_fake(r, who.client, t)
        return _fail("unknown", "scans.code_unknown", code=code, errors={"code": ["查无此码: no label has this code."]})
    if not label.has_pin:
        return _fail("no_pin", "scans.pin_absent", code=code, label=label,
                     errors={"code": ["This label's template has no scratch-off PIN."]})
    if label.state in rules.BAD_STATES or label.state in rules.INACTIVE_STATES:
        verdict = rules.BAD_STATES.get(label.state, "inactive")
        return _fail(verdict, "scans.pin_label_state", code=code, label=label,
                     errors={"code": [f"The label is {label.state}; its PIN is not checked."]})
    if reported or flagged:
        # The resolver warns for this code; a PIN answer would read as proof of a genuine label
        # (and would record a first verification the real label's buyer then sees as a copy).
        reasons = [rules.REASONS["reported_code"]] if reported else []
        if flagged and not reported:
            reasons.append(FLAGGED)
        return _fail("warn", "scans.pin_label_flagged", code=code, label=label, reasons=reasons,
                     errors={"code": ["Inspectors reported this code, or it has an open fraud alert; "
                                      "its PIN is not checked."]})
    try:
        if r is None:
            raise ConnectionError("no redis")
        client_tries, client_ttl = _take(r, client_tries_key(who.client), ps.lock_seconds)
        if client_tries > ps.client_max_attempts:
            _give_back(r, client_tries_key(who.client))  # a refused check is no wrong PIN
            wait = client_ttl or ps.lock_seconds
            return _fail("locked", "scans.pin_client_locked", code=code, label=label, retry_after=wait,
                         errors={"pin": [f"{ps.client_max_attempts} wrong PINs from this client; "
                                         f"locked for {wait} s."]})
        tries, ttl = _take(r, tries_key(code), ps.lock_seconds)
    except REDIS_DOWN as err:
        log.warning("PIN check of %s refused: Redis is unavailable (%s)", code, err)
        return _fail("unavailable", "scans.pin_unavailable", code=code, label=label)
    if tries > ps.max_attempts:
        _give_back(r, client_tries_key(who.client))
        wait = ttl or ps.lock_seconds
        return _fail("locked", "scans.pin_locked", code=code, label=label, retry_after=wait,
                     errors={"pin": [f"{ps.max_attempts} wrong PINs; locked for {wait} s."]})
    if not pin_matches(label, pin):
        code_left, client_left = ps.max_attempts - tries, ps.client_max_attempts - client_tries
        left = min(code_left, client_left)
        if not code_left:
            log.warning("PIN of %s locked after %s wrong tries (client %s)", code, ps.max_attempts, who.client[:8])
        if not client_left:
            log.warning("PIN checks of client %s locked after %s wrong PINs", who.client[:8], ps.client_max_attempts)
        wait = None if left else ((client_ttl if not client_left else ttl) or ps.lock_seconds)
        return _fail("mismatch", "scans.pin_mismatch", code=code, label=label, attempts_left=left,
                     retry_after=wait, errors={"pin": ["The PIN does not match this label."]})
    try:
        r.delete(tries_key(code))
    except REDIS_DOWN:
        pass  # the window still ends on its own
    _give_back(r, client_tries_key(who.client))  # the client's counter keeps wrong PINs only
    done = record_verification(session, label.label_id, code, who.device,
                               known_verified=label.pin_verified_at is not None)
    return PinResult("first" if done.first else "repeat", code=code, label=label, verified_at=done.verified_at,
                     same_device=None if done.first else done.same_device)


def _take(r, key: str, window: int) -> tuple[int, int | None]:
    """Take an attempt from counter `key` (INCR, expiring `window` s after the first): (attempts
    in the window, this one included; seconds left in the window or None). One round trip."""
    p = r.pipeline(transaction=False)
    p.incr(key)
    p.expire(key, window, nx=True)
    p.ttl(key)
    tries, _, ttl = p.execute()
    return int(tries), (int(ttl) if ttl and int(ttl) > 0 else None)


def _give_back(r, key: str) -> None:
    """Return an attempt to counter `key` (a check that compared nothing, or a correct PIN). A
    counter whose window ended meanwhile would come back as -1 without expiry: it is dropped."""
    try:
        if r.decr(key) <= 0:
            r.delete(key)
    except REDIS_DOWN:
        pass


def _count_fake(r, client: str, t: Thresholds) -> None:
    """A never-issued code counts toward the client's fake window, as on the resolver, so an
    enumerator probing codes here is slowed to the crawler rate too."""
    if r is None:
        return
    try:
        p = r.pipeline(transaction=False)
        p.incr(counters.client_key(client, "fakes"))
        p.expire(counters.client_key(client, "fakes"), t.fake_window_s, nx=True)
        p.execute()
    except REDIS_DOWN:
        pass
