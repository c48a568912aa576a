"""The consumer page: server-rendered zh-CN HTML, inline CSS, no JavaScript, no external assets.

Readable at 360 px, light enough for a slow network (a few KB), and plain enough for WeChat's
in-app browser. The verdict is the first thing on the page.
"""
from __future__ import annotations

from jinja2 import DictLoader, Environment


TONE = {"genuine": "ok", "repeat": "ok", "warn": "bad", "inactive": "bad", "voided": "bad", "lost": "bad",
        "stolen": "bad", "unknown": "bad", "check_code": "mid", "rate_limited": "mid"}

_LAYOUT = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ r.title }} · 新会陈皮溯源查询</title>
<style>
*{box-sizing:border-box}
body{margin:0;background:#f6f1e7;color:#222;font:16px/1.6 -apple-system,"PingFang SC","Hiragino Sans GB","Microsoft YaHei","WenQuanYi Micro Hei","Noto Sans CJK SC",sans-serif}
header{background:#8a3b12;color:#fff;padding:12px 16px;font-size:15px}
main{max-width:560px;margin:0 auto;padding:12px}
.verdict{border-radius:10px;padding:16px;margin-bottom:12px;color:#fff}
.verdict h1{margin:0 0 6px;font-size:26px;line-height:1.25}
.verdict p{margin:0;font-size:15px}
.ok{background:#2e7d32}.bad{background:#c62828}.mid{background:#ef6c00}
.card{background:#fff;border-radius:10px;padding:12px 16px;margin-bottom:12px}
.card h2{font-size:16px;margin:0 0 8px;color:#8a3b12}
dl{margin:0;display:grid;grid-template-columns:6.5em 1fr;gap:4px 8px}
dt{color:#666}dd{margin:0;word-break:break-all}
.code{font-family:ui-monospace,Menlo,Consolas,monospace;letter-spacing:1px}
footer{color:#777;font-size:13px;text-align:center;padding:8px 16px 24px}
form{display:flex;gap:8px}
input{flex:1;min-width:0;font-size:16px;padding:8px;border:1px solid #bbb;border-radius:6px}
button{font-size:16px;padding:8px 12px;border:0;border-radius:6px;background:#8a3b12;color:#fff}
.note{margin:0 0 8px;font-size:14px;color:#c62828}
</style>
</head>
<body>
<header>{% block heading %}{% endblock %}</header>
<main>
<section class="verdict {{ tone }}" id="verdict" data-verdict="{{ r.verdict }}">
<h1>{{ r.title }}</h1>
{% if r.warning %}<p id="warning">{{ r.warning }}</p>{% endif %}
</section>
{% block content %}{% endblock %}
</main>
<footer>新会陈皮行业协会 · 时间均为北京时间</footer>
</body>
</html>
"""

_RESOLVER_PAGE = """{% extends "layout.html" %}
{% block heading %}新会陈皮 · 数字化溯源查询{% endblock %}
{% block content %}
{% if r.label %}
<section class="card" id="label">
<h2>{{ r.trademark }}</h2>
<dl>
<dt>产品</dt><dd>{{ r.label.product }}</dd>
<dt>经营者</dt><dd>{{ r.label.operator.name }}</dd>
<dt>信用代码</dt><dd class="code">{{ r.label.operator.credit_code }}</dd>
{% if r.label.lot %}<dt>批次</dt><dd>{{ r.label.lot }}</dd>{% endif %}
{% if r.label.harvest_year %}<dt>采收年份</dt><dd>{{ r.label.harvest_year }} 年</dd>{% endif %}
{% if r.label.age_text %}<dt>陈化年限</dt><dd>{{ r.label.age_text }}({{ r.label.grade }})</dd>{% endif %}
{% if r.label.origin.towns %}<dt>产地</dt><dd>新会区 {{ r.label.origin.towns|join("、") }}{% if r.label.origin.villages %} · {{ r.label.origin.villages[:3]|join("、") }}{% endif %}</dd>{% endif %}
<dt>标签序号</dt><dd class="code">{{ r.label.serial }}</dd>
</dl>
</section>
{% endif %}
{% if r.label and r.label.pin and r.label.state == "activated" and "reported_code" not in r.alerts %}
<section class="card" id="pin">
<h2>刮开涂层,输入验证码</h2>
{% if pin_at %}<p class="note" id="pin-verified">此标签的验证码已于 {{ pin_at }} 被验证过。如果您手中标签的涂层完好无损,这可能是仿冒品。</p>{% endif %}
<form method="post" action="/v/{{ r.code }}/pin">
<input name="pin" inputmode="numeric" placeholder="涂层下的 8 位数字" maxlength="24" autocomplete="off" required>
<button type="submit">验证</button>
</form>
</section>
{% endif %}
{% if r.scan %}
<section class="card" id="scans">
<h2>查询记录</h2>
<dl>
<dt>查询次数</dt><dd>第 {{ r.scan.count }} 次</dd>
{% if r.scan.first_at %}<dt>首次查询</dt><dd>{{ first_at }}</dd>{% endif %}
</dl>
</section>
{% endif %}
<section class="card">
<h2>查询编码</h2>
{% if r.code_display %}<p class="code">{{ r.code_display }}</p>{% endif %}
<form method="get" action="/v/">
<input name="c" placeholder="输入标签上的11位编码" maxlength="20" autocomplete="off">
<button type="submit">查询</button>
</form>
</section>
{% endblock %}
"""


def _local(at) -> str | None:
    if at is None:
        return None
    from ..timeutil import SHANGHAI, as_utc

    return as_utc(at).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def render(result: dict) -> str:
    first = result.get("scan") or {}
    pin = (result.get("label") or {}).get("pin") or {}
    return _RESOLVER.render(r=result, tone=TONE.get(result["verdict"], "mid"), first_at=_local(first.get("first_at")),
                            pin_at=_local(pin.get("verified_at")))


# --- the PIN check's answer (POST /v/{code}/pin) ---------------------------------------------------
PIN_TONE = {"first": "ok", "repeat": "bad", "mismatch": "mid", "locked": "bad", "no_pin": "mid", "unknown": "bad",
            "check_code": "mid", "bad_pin": "mid", "inactive": "bad", "voided": "bad", "lost": "bad", "stolen": "bad",
            "warn": "bad", "unavailable": "mid", "rate_limited": "mid"}
_PIN_PAGE = """{% extends "layout.html" %}
{% block heading %}新会陈皮 · 刮开验证码验证{% endblock %}
{% block content %}
{% if r.label %}
<section class="card" id="label">
<h2>新会陈皮 地理标志证明商标</h2>
<dl>
<dt>产品</dt><dd>{{ r.label.product }}</dd>
<dt>经营者</dt><dd>{{ r.label.operator.name }}</dd>
<dt>信用代码</dt><dd class="code">{{ r.label.operator.credit_code }}</dd>
<dt>标签序号</dt><dd class="code">{{ r.label.serial }}</dd>
</dl>
</section>
{% endif %}
{% if r.code and r.verdict in ("mismatch", "bad_pin", "unavailable") %}
<section class="card" id="pin">
<h2>刮开涂层,输入验证码</h2>
<form method="post" action="/v/{{ r.code }}/pin">
<input name="pin" inputmode="numeric" placeholder="涂层下的 8 位数字" maxlength="24" autocomplete="off" required>
<button type="submit">验证</button>
</form>
</section>
{% endif %}
<section class="card">
{% if r.code_display %}<p class="code">{{ r.code_display }}</p>{% endif %}
{% if r.code %}<p><a href="/v/{{ r.code }}">返回扫码查询结果</a></p>{% endif %}
</section>
{% endblock %}
"""


def render_pin(result: dict) -> str:
    tone = PIN_TONE.get(result["verdict"], "mid")
    if result["verdict"] == "repeat" and result.get("same_device"):
        tone = "ok"
    return _PIN.render(r=result, tone=tone)


# One layout (head, style, the verdict, footer) and a page per answer, so both pages look alike.
_env = Environment(loader=DictLoader({"layout.html": _LAYOUT, "resolver.html": _RESOLVER_PAGE,
                                      "pin.html": _PIN_PAGE}),
                   autoescape=True, trim_blocks=True, lstrip_blocks=True)
_RESOLVER, _PIN = _env.get_template("resolver.html"), _env.get_template("pin.html")
