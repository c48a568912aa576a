"""Made-up labels for previews, tests and benchmarks (never valid codes: key id "0")."""
from __future__ import annotations

from collections.abc import Iterator

from . import codes
from .render import BatchInfo, LabelRow

#: public on purpose: preview codes are made with key id "0", which no resolver accepts
SAMPLE_KEY = b"chenpi-trace preview labels; not a secret"


def sample_batch(title: str = "标签预览 (样例,非真实标签)") -> BatchInfo:
    return BatchInfo(
        operator_name="江门市新会区样例陈皮有限公司",
        credit_code="91440705MA51C0K8XT",  # made up, with a valid GB 32100 check character
        product="新会陈皮 (大红皮)",
        lot="L2023-0815",
        harvest_year="2019",
        title=title,
    )


def sample_rows(base_url: str, count: int, *, batch_id: int = 0, first: int = 1,
                pins: bool = False) -> Iterator[LabelRow]:
    """Labels `first` … `first + count - 1` of a made-up batch under `base_url`."""
    for serial in range(first, first + count):
        code = codes.make_code(codes.PREVIEW_KEY_ID, SAMPLE_KEY, batch_id, serial)
        pin = codes.make_pin(codes.PREVIEW_KEY_ID, SAMPLE_KEY, batch_id, serial) if pins else None
        yield LabelRow(code=codes.display(code), serial=codes.format_serial(batch_id, serial),
                       url=codes.qr_url(base_url, code), pin=pin)
