"""The consumer's check of a label's scratch-off PIN (POST /v/{code}/pin): once, race-safe,
with wrong attempts limited per code.

Plain functions over a session and a Redis client (no Flask request objects). The PIN itself is
the labels domain's (`labels.codes.make_pin`, `labels.service.pins`); this module adds what the
consumer meets: the code's checks, the state warnings the resolver gives, the attempt limit and
the answer (verdict, title, warning) the page and the JSON show.

Attempts: every check of a well-formed PIN on a label that has one takes an attempt from the
code's counter in Redis (`pin:{CODE}:tries`, INCR, expiring PIN_LOCK_SECONDS after the first)
before the PIN is compared, so concurrent guesses cannot exceed PIN_MAX_ATTEMPTS; a correct PIN
clears the counter. Past the limit the code is locked until the window ends (429, Retry-After),
whatever PIN is sent. Without Redis there is no attempt limit, so no check: 503.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from ..config import setting
from ..errors import CATALOG, AppError
from ..labels import codes
from . import counters, rules
from .service import REDIS_DOWN, Client, find_label, known_keys
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
    "unavailable": "暂时无法验证",
    "rate_limited": rules.TITLES["rate_limited"],
}
#: verdicts a consumer can trust (the rest say why not, or what to do)
GENUINE = ("first",)


@dataclass(frozen=True)
class PinSettings:
    max_attempts: int
    lock_seconds: int


def pin_settings() -> PinSettings:
    return PinSettings(max_attempts=max(1, int(setting("PIN_MAX_ATTEMPTS"))),
                       lock_seconds=max(1, int(setting("PIN_LOCK_SECONDS"))))


def tries_key(code: str) -> str:
    """pin:{CODE}:tries — in the code's hash slot, outside the scan counters' key space (so
    `chenpi scans rebuild-counters` leaves running locks alone)."""
    return f"pin:{{{code}}}:tries"


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
            return f"此标签的验证码错误次数过多,已暂时锁定,请约 {minutes} 分钟后再试。"
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

    Order: the client's rate limit (the resolver's), the code's spelling (no database), the
    PIN's form (8 digits), the label (查无此码, no PIN, its state), the code's attempt counter,
    then the constant-time comparison.
    """
    ps = ps or pin_settings()
    if r is not None:
        try:
            wait = counters.rate_check(r, who.client, t.rate_per_min, t.crawler_rate_per_min, t.fake_burst)
        except REDIS_DOWN:
            wait = None  # the per-code counter below answers 503
        if wait is not None:
            return _fail("rate_limited", "scans.rate_limited", retry_after=wait)
    if not isinstance(code_text, str) or len(code_text) > 64:
        return _fail("check_code", "labels.code_malformed",
                     errors={"code": ["A label code has 11 characters."]})
    try:
        code = codes.parse(code_text, known_keys()).code
    except codes.CodeError as err:
        return _fail("check_code", err.reason, errors=err.errors)
    try:
        pin = codes.normalise_pin(pin_text)
    except AppError as err:
        return _fail("bad_pin", err.reason, errors=err.errors, code=code)
    from ..labels.service.pins import pin_label, pin_matches, record_verification

    target = pin_label(session, code)
    if target is None:
        _count_fake(r, who.client, t)
        return _fail("unknown", "scans.code_unknown", code=code, errors={"code": ["查无此码: no label has this code."]})
    label = find_label(session, code)
    if not target.has_pin:
        return _fail("no_pin", "scans.pin_absent", code=code, label=label,
                     errors={"code": ["This label's template has no scratch-off PIN."]})
    if target.state in rules.BAD_STATES or target.state in rules.INACTIVE_STATES:
        verdict = rules.BAD_STATES.get(target.state, "inactive")
        return _fail(verdict, "scans.pin_label_state", code=code, label=label,
                     errors={"code": [f"The label is {target.state}; its PIN is not checked."]})
    key = tries_key(code)
    try:
        if r is None:
            raise ConnectionError("no redis")
        p = r.pipeline(transaction=False)
        p.incr(key)
        p.expire(key, ps.lock_seconds, nx=True)
        p.ttl(key)
        tries, _, ttl = p.execute()
    except REDIS_DOWN as err:
        log.warning("PIN check of %s refused: Redis is unavailable (%s)", code, err)
        return _fail("unavailable", "scans.pin_unavailable", code=code, label=label)
    tries = int(tries)
    if tries > ps.max_attempts:
        wait = int(ttl) if ttl and int(ttl) > 0 else ps.lock_seconds
        return _fail("locked", "scans.pin_locked", code=code, label=label, retry_after=wait,
                     errors={"pin": [f"{ps.max_attempts} wrong PINs; locked for {wait} s."]})
    if not pin_matches(target, pin):
        left = ps.max_attempts - tries
        if not left:
            log.warning("PIN of %s locked after %s wrong tries (client %s)", code, ps.max_attempts, who.client[:8])
        return _fail("mismatch", "scans.pin_mismatch", code=code, label=label, attempts_left=left,
                     retry_after=None if left else (int(ttl) if ttl and int(ttl) > 0 else ps.lock_seconds),
                     errors={"pin": ["The PIN does not match this label."]})
    try:
        r.delete(key)
    except REDIS_DOWN:
        pass  # the window still ends on its own
    done = record_verification(session, target.label_id, who.device)
    return PinResult("first" if done.first else "repeat", code=code, label=label, verified_at=done.verified_at,
                     same_device=None if done.first else done.same_device)


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
