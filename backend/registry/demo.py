"""Demo data at the seed's real scale: Xinhui's 11 towns, 168 villages, 9,377 grower households
with their plots (about 14万亩 in all), 2,092 operators and about 30 nurseries.

`build_demo` is pure (no database, no Flask): the same seed gives the same rows, with references
by natural key. `load_demo` writes them with bulk INSERTs, mapping natural keys to ids with one
query per table. Every value obeys the registry's rules: valid credit codes and ID numbers,
≤ 80 trees per 亩, points and polygons inside Xinhui, polygon areas close to the declared area.
Names and codes are made up; only the town names are real.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from . import service, validators
from .models import MAX_TREES_PER_MU, Grower, Nursery, Operator, Plot, Town, Village

SEED = 2022
N_GROWERS = 9_377
N_OPERATORS = 2_092
N_NURSERIES = 30
TOTAL_AREA_MU = 140_000  # 14万亩

# name, code, centre lon/lat (approximate), villages
TOWNS: tuple[tuple[str, str, float, float, int], ...] = (
    ("会城街道", "440705001", 113.035, 22.525, 20),
    ("大泽镇", "440705100", 112.965, 22.580, 16),
    ("司前镇", "440705101", 112.875, 22.545, 14),
    ("罗坑镇", "440705102", 112.925, 22.455, 14),
    ("双水镇", "440705103", 112.985, 22.405, 17),
    ("崖门镇", "440705104", 113.075, 22.265, 15),
    ("沙堆镇", "440705105", 112.995, 22.300, 14),
    ("古井镇", "440705106", 113.065, 22.340, 16),
    ("三江镇", "440705107", 113.105, 22.405, 14),
    ("睦洲镇", "440705108", 113.135, 22.460, 16),
    ("大鳌镇", "440705109", 113.185, 22.385, 12),
)
DEMO_TOWN_CODES = tuple(t[1] for t in TOWNS)

_VILLAGE_FIRST = "东西南北上下新大小石沙龙凤白黄梅莲茶松桂河塘岗冲湾洲田平和安天丰泰仁义礼古长金银潮"
_VILLAGE_SECOND = "甲乙坑围头尾岗塘冲湾洲江溪边村乡美安兴隆盛华乐福寿阁山岭涌滘基埠"
_SURNAMES = ("陈" * 12 + "李" * 5 + "黄" * 5 + "梁" * 5 + "林" * 4 + "张" * 3 + "何" * 3 + "吴" * 3 + "谭" * 3
             + "钟" * 2 + "冯" * 2 + "区" * 2 + "莫" * 2 + "容" * 2 + "赵周卢邓罗叶郑伍余麦袁关杨司徒")
_GIVEN = "志伟国华建明永强文杰家俊丽芳秀英玉兰金凤德荣锦辉少雄卓坚炳权锡满汝勤惠珍润好桂彩玲嘉敏浩然子健"
_BRAND = "裕丰泰隆昌盛和兴源华德福瑞祥恒广宏金宝鸿新会柑皮香陈年岭南圭峰崖海天马茶坑梅江葵乡侨园古宝百怡"
_MOBILE_PREFIXES = ("134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182", "183",
                    "187", "188", "130", "131", "132", "155", "156", "185", "186", "133", "153", "180", "189", "199")
_ROADS = ("圭峰路", "今古洲路", "新会大道", "中心南路", "振兴路", "侨兴北路", "冈州大道", "南庚路", "东庆路", "紫华路")
_ID_REGIONS = ("440705",) * 8 + ("440781", "440783", "440703")  # 新会 mostly; 台山, 开平, 蓬江
_KINDS = ("shop", "enterprise", "processor", "cooperative")
_KIND_WEIGHTS = (50, 25, 15, 10)
_CREDIT_PREFIX = {"enterprise": "91", "processor": "91", "cooperative": "93", "shop": "92"}  # GB 32100: 91 company,
# 92 个体工商户, 93 农民专业合作社
_TOWN_OPERATOR_WEIGHTS = (30, 8, 6, 6, 12, 6, 6, 8, 10, 8, 5)


@dataclass
class DemoData:
    towns: list[dict] = field(default_factory=list)
    villages: list[dict] = field(default_factory=list)  # town by "town_code"
    growers: list[dict] = field(default_factory=list)  # village by "village_code"; plain "id_number"
    plots: list[dict] = field(default_factory=list)  # "household_code", "village_code"
    operators: list[dict] = field(default_factory=list)  # "town_code"
    nurseries: list[dict] = field(default_factory=list)  # "town_code", "village_code"

    def total_rows(self) -> int:
        return sum(len(rows) for rows in (self.towns, self.villages, self.growers, self.plots, self.operators,
                                          self.nurseries))


# --- pure generation -----------------------------------------------------------------------------
def _clamp_point(lon: float, lat: float, margin: float = 0.01) -> tuple[float, float]:
    lon_min, lat_min, lon_max, lat_max = validators.XINHUI_BBOX
    return (round(min(max(lon, lon_min + margin), lon_max - margin), 6),
            round(min(max(lat, lat_min + margin), lat_max - margin), 6))


def _near(rng: random.Random, lon: float, lat: float, radius_deg: float) -> tuple[float, float]:
    r, a = radius_deg * math.sqrt(rng.random()), rng.random() * 2 * math.pi
    return _clamp_point(lon + r * math.cos(a), lat + r * math.sin(a))


def _mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _id_number(rng: random.Random) -> str:
    born = date(1945, 1, 1) + timedelta(days=rng.randrange(365 * 50))
    body = f"{rng.choice(_ID_REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + validators.id_check_char(body)


def _credit_code(rng: random.Random, kind: str) -> str:
    if rng.random() < 0.7:  # registered since 2015: organisation part begins "MA"
        org = "MA" + "".join(rng.choice(validators.CREDIT_ALPHABET) for _ in range(7))
    else:
        org = f"{rng.randrange(10**8):08d}" + rng.choice("0123456789X")
    body = _CREDIT_PREFIX[kind] + "440705" + org
    return body + validators.credit_check_char(body)


def _unique(make, seen: set):
    value = make()
    while value in seen:
        value = make()
    seen.add(value)
    return value


def _boundary(rng: random.Random, lon: float, lat: float, area_mu: Decimal) -> dict:
    """A rectangle around the point whose area is the declared area."""
    side = math.sqrt(float(area_mu) * validators.M2_PER_MU)
    ratio = rng.uniform(0.6, 1.6)
    half_w, half_h = side * math.sqrt(ratio) / 2, side / math.sqrt(ratio) / 2
    dlon, dlat = half_w / (111_320 * math.cos(math.radians(lat))), half_h / 110_540
    ring = [[lon - dlon, lat - dlat], [lon + dlon, lat - dlat], [lon + dlon, lat + dlat], [lon - dlon, lat + dlat]]
    ring = [[round(x, 7), round(y, 7)] for x, y in ring]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def _short(town: str) -> str:
    return town.removesuffix("街道").removesuffix("镇")


def build_demo(scale: float = 1.0, seed: int = SEED) -> DemoData:
    """The demo rows, deterministic for a seed. `scale` shrinks growers, plots, operators and
    nurseries (for quick tests); towns and villages are always all there."""
    rng = random.Random(seed)
    data = DemoData()

    # towns and villages
    villages_of: dict[str, list[dict]] = {}
    for name, code, lon, lat, n_villages in TOWNS:
        data.towns.append({"name": name, "code": code, "lon": lon, "lat": lat})
        names: set[str] = set()
        rows = villages_of[code] = []
        for k in range(n_villages):
            community = name.endswith("街道") and k < n_villages // 2
            stem = _unique(lambda: rng.choice(_VILLAGE_FIRST) + rng.choice(_VILLAGE_SECOND), names)
            v_lon, v_lat = _near(rng, lon, lat, 0.045)
            rows.append({"town_code": code, "name": stem + ("社区" if community else "村"),
                         "code": f"{code}{(k + 1 if community else 200 + k):03d}", "lon": v_lon, "lat": v_lat})
        data.villages.extend(rows)

    # grower households, spread unevenly over the villages
    n_growers = max(1, round(N_GROWERS * scale))
    weights = [rng.uniform(0.4, 1.6) for _ in data.villages]
    per_village = [0] * len(data.villages)
    for i in rng.choices(range(len(data.villages)), weights=weights, k=n_growers):
        per_village[i] += 1
    id_numbers: set[str] = set()
    for village, count in zip(data.villages, per_village):
        for k in range(1, count + 1):
            given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))
            data.growers.append({
                "household_code": f"{village['code']}{k:03d}",
                "name": rng.choice(_SURNAMES) + given,
                "phone": _mobile(rng) if rng.random() < 0.95 else None,
                "id_number": _unique(lambda: _id_number(rng), id_numbers),
                "village_code": village["code"],
                "_point": (village["lon"], village["lat"]),
            })

    # plots: 1–3 per household, areas scaled so the district adds up to about 14万亩
    raw: list[tuple[dict, int, float]] = []
    for grower in data.growers:
        for k in range(1, rng.choices((1, 2, 3), weights=(35, 40, 25))[0] + 1):
            raw.append((grower, k, rng.lognormvariate(1.7, 0.6)))
    factor = TOTAL_AREA_MU * (len(data.growers) / N_GROWERS) / sum(r[2] for r in raw)
    for grower, k, size in raw:
        area = max(Decimal("0.30"), Decimal(size * factor).quantize(Decimal("0.01")))
        trees = int((area * rng.randint(45, MAX_TREES_PER_MU)).to_integral_value(ROUND_DOWN))
        lon, lat = _near(rng, *grower["_point"], 0.015)
        quota = None
        if rng.random() < 0.45:
            t_per_mu = Decimal(str(round(rng.uniform(1.0, 3.5), 2)))
            quota = (area * t_per_mu * 1000).quantize(Decimal("0.001"))
        data.plots.append({
            "code": f"{grower['household_code']}-{k}",
            "household_code": grower["household_code"],
            "village_code": grower["village_code"],
            "area_mu": area,
            "tree_count": trees,
            "planting_year": rng.randint(1990, 2021),
            "verified_yield_kg": quota,
            "lon": lon,
            "lat": lat,
            "boundary": _boundary(rng, lon, lat, area) if rng.random() < 0.12 else None,
        })
    for grower in data.growers:
        del grower["_point"]

    # operators
    credit_codes: set[str] = set()
    names: set[str] = set()
    n_operators = max(1, round(N_OPERATORS * scale))
    for n in range(n_operators):
        kind = rng.choices(_KINDS, weights=_KIND_WEIGHTS)[0]
        t_name, t_code, t_lon, t_lat, _ = TOWNS[rng.choices(range(len(TOWNS)), weights=_TOWN_OPERATOR_WEIGHTS)[0]]
        village = rng.choice(villages_of[t_code])
        data.operators.append({
            "name": _unique(lambda: _operator_name(rng, kind, t_name), names),
            "credit_code": _unique(lambda: _credit_code(rng, kind), credit_codes),
            "kind": kind,
            "town_code": t_code,
            "address": (f"江门市新会区{t_name}{village['name']}{rng.randint(1, 300)}号" if rng.random() < 0.5
                        else f"江门市新会区{t_name}{rng.choice(_ROADS)}{rng.randint(1, 500)}号"),
            "contact_phone": _mobile(rng) if rng.random() < 0.6 else f"0750-6{rng.randrange(10**6):06d}",
            **dict(zip(("lon", "lat"), _near(rng, t_lon, t_lat, 0.03))),
            **_licence(rng, kind, n),
        })

    # nurseries
    for n in range(max(1, round(N_NURSERIES * scale))):
        t_name, t_code, t_lon, t_lat, _ = rng.choice(TOWNS)
        village = rng.choice(villages_of[t_code])
        brand = "".join(rng.choice(_BRAND) for _ in range(2))
        data.nurseries.append({
            "name": f"江门市新会区{_short(t_name)}{brand}{rng.choice(('柑苗场', '种苗场', '苗圃'))}",
            "credit_code": _unique(lambda: _credit_code(rng, rng.choice(("enterprise", "cooperative", "shop"))),
                                   credit_codes),
            "licence_no": f"(粤)农种许字({rng.randint(2018, 2023)})第{n + 1:04d}号",
            "town_code": t_code,
            "village_code": village["code"],
            "address": f"江门市新会区{t_name}{village['name']}",
            **dict(zip(("lon", "lat"), _near(rng, village["lon"], village["lat"], 0.01))),
        })
    return data


def _operator_name(rng: random.Random, kind: str, town: str) -> str:
    brand = "".join(rng.choice(_BRAND) for _ in range(2))
    short = _short(town)
    if kind == "enterprise":
        return f"江门市新会区{brand}{rng.choice(('陈皮', '陈皮实业', '柑茶', '陈皮农业发展', '陈皮食品'))}有限公司"
    if kind == "processor":
        return f"新会区{short}{brand}{rng.choice(('陈皮加工厂', '柑皮加工场', '陈皮制品厂'))}"
    if kind == "cooperative":
        return f"江门市新会区{short}{brand}{rng.choice(('柑橘专业合作社', '陈皮专业合作社', '新会柑种植专业合作社'))}"
    return f"新会区{short}{brand}{rng.choice(('陈皮商行', '陈皮店', '茶行', '土特产商店', '陈皮行'))}"


def _licence(rng: random.Random, kind: str, n: int) -> dict:
    """Certification-trademark licence: a share of operators hold one, a few lapsed."""
    p_active = 0.15 if kind == "shop" else 0.40
    roll = rng.random()
    none = {"licence_status": "none", "licence_no": None, "licence_valid_from": None, "licence_valid_until": None}
    if roll < p_active:
        status, start_year = "active", rng.randint(2023, 2025)
    elif roll < p_active + 0.03:
        status, start_year = rng.choice(("expired", "suspended", "revoked")), rng.randint(2018, 2021)
    else:
        return none
    start = date(start_year, 1, 1) + timedelta(days=rng.randrange(365))
    return {"licence_status": status, "licence_no": f"XHCP-{start_year}-{n + 1:05d}",
            "licence_valid_from": start, "licence_valid_until": start.replace(year=start.year + 3) - timedelta(days=1)}


# --- loading -------------------------------------------------------------------------------------
def demo_counts(session: Session) -> dict[str, int]:
    count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
    return {
        "towns": count(Town),
        "villages": count(Village),
        "growers": count(Grower),
        "plots": count(Plot),
        "plot_area_mu": int(session.scalar(select(func.coalesce(func.sum(Plot.area_mu), 0)))),
        "operators": count(Operator),
        "nurseries": count(Nursery),
    }


def demo_loaded(session: Session) -> bool:
    found = session.scalar(select(func.count()).select_from(Town).where(Town.code.in_(DEMO_TOWN_CODES)))
    return found == len(DEMO_TOWN_CODES)


CHUNK = 5_000


def load_demo(session: Session, progress: bool = True, scale: float = 1.0) -> dict[str, int]:
    """Load the demo data set once (returns the registry's counts; a second call loads nothing).
    Runs in the caller's transaction: the caller commits."""
    if demo_loaded(session):
        return demo_counts(session)
    data = build_demo(scale)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=data.total_rows(), unit="row", desc="demo data")

    def put(model, rows: list[dict]) -> None:
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i:i + CHUNK]
            session.execute(insert(model).execution_options(render_nulls=True), chunk)
            if bar is not None:
                bar.update(len(chunk))

    try:
        # Towns already registered under a demo name are reused, not duplicated.
        existing = dict(session.execute(select(Town.name, Town.id).where(Town.name.in_([t["name"] for t in data.towns]))).all())
        put(Town, [t for t in data.towns if t["name"] not in existing])
        town_ids = dict(session.execute(select(Town.code, Town.id).where(Town.code.in_(DEMO_TOWN_CODES))).all())
        for t in data.towns:
            town_ids.setdefault(t["code"], existing.get(t["name"]))

        put(Village, [{**_without(v, "town_code"), "town_id": town_ids[v["town_code"]]} for v in data.villages])
        village_ids = dict(session.execute(select(Village.code, Village.id).where(
            Village.code.in_([v["code"] for v in data.villages]))).all())

        put(Grower, [{**service.grower_values(_without(g, "village_code")), "village_id": village_ids[g["village_code"]]}
                     for g in data.growers])
        grower_ids = dict(session.execute(select(Grower.household_code, Grower.id).join(Village).where(
            Village.id.in_(list(village_ids.values())))).all())

        put(Plot, [{**_without(p, "household_code", "village_code"), "grower_id": grower_ids[p["household_code"]],
                    "village_id": village_ids[p["village_code"]]} for p in data.plots])
        put(Operator, [{**_without(o, "town_code"), "town_id": town_ids[o["town_code"]]} for o in data.operators])
        put(Nursery, [{**_without(n, "town_code", "village_code"), "town_id": town_ids[n["town_code"]],
                       "village_id": village_ids[n["village_code"]]} for n in data.nurseries])
        session.flush()
    finally:
        if bar is not None:
            bar.close()
    return demo_counts(session)


def _without(row: dict, *keys: str) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


DEMO_USERS = (("demo-admin", "admin"), ("demo-operator", "operator"), ("demo-agent", "agent"),
              ("demo-inspector", "inspector"))


def demo_tokens(session: Session) -> dict[str, tuple[str, str]]:
    """Make sure the demo users exist and give each a new token: {name: (role, token)}. The
    operator and agent users belong to the first operator with an active trademark licence (the one
    the labels demo takes along the label path), or the first operator if none has one. The caller
    commits."""
    from ..auth import service as auth
    from ..auth.models import User

    first_operator = session.scalar(select(Operator.id).order_by(
        (Operator.licence_status != "active"), Operator.id).limit(1))
    tokens = {}
    for name, role in DEMO_USERS:
        needs_operator = role in ("operator", "agent")
        if needs_operator and first_operator is None:
            continue
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            user = auth.create_user(session, name, role, first_operator if needs_operator else None)
        elif not user.active:
            user.active = True  # the demo command promises working tokens
        tokens[name] = (user.role, auth.issue_token(session, user))
    return tokens
