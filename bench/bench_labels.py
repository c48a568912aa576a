"""Label PDF rendering benchmark: throughput, bytes per label and peak memory.

    .venv/bin/python bench/bench_labels.py            # 10,000 and 100,000 labels (≈ 8 minutes)
    .venv/bin/python bench/bench_labels.py --quick    # 2,000 and 20,000 labels

Each measurement runs in a fresh subprocess (peak memory = its ru_maxrss). Measured, in one run:
- the renderer (backend.labels.render.render_pdf) on the A4 3×8 sheet and the 50×30 mm roll at
  both sizes: labels/s, bytes/label, peak RSS;
- the baseline: reportlab's own QR widget (reportlab.graphics.barcode.qr.QrCodeWidget) drawing
  the same labels (1,000), everything drawn per label; and the ratio;
- the renderer without reportlab's C accelerator (rl_accel), to show what it buys;
- a batch split into chunks rendered by two worker processes and joined, against one process,
  with a check that both give the same bytes;
- the QR encoders alone: segno with its automatic mask, segno with the fixed mask, zxing-cpp.
Rows (codes, serials, URLs) are made on the fly from the HMAC, as a worker would stream them, and
their cost is included. Results are printed and written to bench/out/labels.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE = "https://trace.example.cn"
TEMPLATES = ("a4-3x8-70x37", "roll-50x30")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- children (one measurement each) -------------------------------------------------------------
def child_render(template: str, count: int, out: str, no_accel: bool) -> dict:
    if no_accel:
        sys.modules["_rl_accel"] = None  # reportlab falls back to its Python code
    from backend.labels import render, samples, templates

    t = templates.load(template)
    rows = samples.sample_rows(BASE, count)
    start, cpu = time.perf_counter(), _cpu()
    result = render.render_pdf(t, samples.sample_batch(), rows, out)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    from reportlab.lib import rl_accel

    return {"labels": result.labels, "pages": result.pages, "seconds": seconds, "cpu_seconds": cpu, "bytes": result.bytes,
            "sha256": result.sha256, "maxrss_mb": _rss_mb(), "rl_accel": rl_accel.fp_str.__module__ == "_rl_accel"}


def child_widget(template: str, count: int, out: str) -> dict:
    """The baseline: reportlab's QR widget and plain drawString, everything per label."""
    from reportlab.graphics import renderPDF
    from reportlab.graphics.barcode.qr import QrCodeWidget
    from reportlab.graphics.shapes import Drawing
    from reportlab.pdfgen import canvas

    from backend.labels import fonts, render, samples, templates

    t = templates.load(template)
    font = fonts.load()
    batch = samples.sample_batch()
    mm = 72 / 25.4
    q = t.qr
    start, cpu = time.perf_counter(), _cpu()
    c = canvas.Canvas(out, pagesize=(t.page_w * mm, t.page_h * mm), invariant=1, pageCompression=1)
    slots = t.slots()
    for i, row in enumerate(samples.sample_rows(BASE, count)):
        sx, sy = slots[i % t.per_page]
        x0, y0 = sx * mm, (t.page_h - sy - t.label_h) * mm
        w = QrCodeWidget(row.url, barLevel=q.error)
        b = w.getBounds()
        size = q.box.w * mm
        d = Drawing(size, size, transform=[size / (b[2] - b[0]), 0, 0, size / (b[3] - b[1]), 0, 0])
        d.add(w)
        renderPDF.draw(d, c, x0 + q.box.x * mm, y0 + (t.label_h - q.box.y - q.box.h) * mm)
        for el in t.texts(tuple(templates.FIELDS)):
            value = {"code": row.code, "serial": row.serial}.get(el.field) or (
                el.text if el.field in templates.STATIC_FIELDS else batch.value(el.field))
            c.setFont(font.name, el.min_size)
            c.drawString(x0 + el.box.x * mm, y0 + (t.label_h - el.box.y - el.box.h) * mm + 1, el.prefix + value)
        if i % t.per_page == t.per_page - 1:
            c.showPage()
    c.showPage()
    c.save()
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    return {"labels": count, "seconds": seconds, "cpu_seconds": cpu, "bytes": os.path.getsize(out), "maxrss_mb": _rss_mb()}


def child_chunks(template: str, first: int, last: int, outdir: str) -> dict:
    """A worker: render its share of the batch's chunks (as plan_chunks splits it) to files."""
    from backend.labels import render, samples, templates

    t = templates.load(template)
    start, cpu = time.perf_counter(), _cpu()
    files = []
    for a, b in render.plan_chunks(first, last, t):
        path = os.path.join(outdir, f"chunk-{a:07d}.pdf")
        render.render_chunk(t, samples.sample_batch(), samples.sample_rows(BASE, b - a + 1, first=a), path)
        files.append(path)
    return {"files": files, "seconds": time.perf_counter() - start, "cpu_seconds": _cpu() - cpu, "maxrss_mb": _rss_mb()}


def child_encoders(count: int) -> dict:
    import segno

    from backend.labels import qr, samples

    urls = [r.url for r in samples.sample_rows(BASE, count)]
    out = {}
    start = time.perf_counter()
    for u in urls[: count // 4]:
        segno.make_qr(u, error="M", boost_error=False)
    out["segno_auto_mask_ms"] = (time.perf_counter() - start) / (count // 4) * 1e3
    start = time.perf_counter()
    for u in urls:
        qr.encode(u, "M")
    out["segno_fixed_mask_ms"] = (time.perf_counter() - start) / count * 1e3
    try:
        import numpy as np
        import zxingcpp

        start = time.perf_counter()
        for u in urls:
            bc = zxingcpp.create_barcode(u, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
            (np.asarray(bc.to_image(scale=1, add_quiet_zones=False)) == 0).astype(np.uint8).tobytes()
        out["zxing_cpp_ms"] = (time.perf_counter() - start) / count * 1e3
    except ImportError:
        out["zxing_cpp_ms"] = None
    return out


# --- the parent ----------------------------------------------------------------------------------
def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child {args} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 and 20,000 labels instead of 10,000 and 100,000")
    ap.add_argument("--split-only", type=int, metavar="N",
                    help="only compare one process with two worker processes on N A4 labels")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "render":
            res = child_render(rest[0], int(rest[1]), rest[2], rest[3] == "1")
        elif kind == "widget":
            res = child_widget(rest[0], int(rest[1]), rest[2])
        elif kind == "chunks":
            res = child_chunks(rest[0], int(rest[1]), int(rest[2]), rest[3])
        else:
            res = child_encoders(int(rest[0]))
        print(json.dumps(res))
        return

    small, large = (2_000, 20_000) if args.quick else (10_000, 100_000)
    if args.split_only:
        small = large = args.split_only
    baseline_n = 500 if args.quick else 1_000
    report: dict = {"machine": {"cpus": os.cpu_count()}, "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-labels-"))

    def line(text: str) -> None:
        print(text, flush=True)

    line(f"label rendering benchmark ({small:,} and {large:,} labels; each run in its own process)")
    enc = run_child("encoders", "2000")
    line("QR encoders, per code: segno auto mask {segno_auto_mask_ms:.2f} ms, segno fixed mask "
         "{segno_fixed_mask_ms:.2f} ms, zxing-cpp {z} ms".format(**enc, z=f"{enc['zxing_cpp_ms']:.2f}" if enc["zxing_cpp_ms"] else "n/a"))
    report["encoders"] = enc
    line(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine slows "
         "wall-clock rates; the CPU-time rates are steadier)")
    head = f"{'template':<14} {'what':<23} {'labels':>8} {'wall s':>7} {'labels/s':>9} {'/CPU s':>7} {'B/label':>8} {'peak MB':>8}"
    line(head)

    def row(t: str, what: str, r: dict, note: str = "") -> None:
        r["rate"] = r["labels"] / r["seconds"]
        r["cpu_rate"] = r["labels"] / r["cpu_seconds"]
        line(f"{t:<14} {what:<23} {r['labels']:>8,} {r['seconds']:>7.1f} {r['rate']:>9.0f} {r['cpu_rate']:>7.0f} "
             f"{r['bytes'] / r['labels']:>8.0f} {r['maxrss_mb']:>8.0f}  {note}")
        report["runs"].append({"template": t, "what": what, **r})

    results = {}
    for t in () if args.split_only else TEMPLATES:
        base = run_child("widget", t, str(baseline_n), str(tmp / f"{t}-widget.pdf"))
        row(t, "QrCodeWidget baseline", base)
        for n in (small, large):
            r = run_child("render", t, str(n), str(tmp / f"{t}-{n}.pdf"), "0")
            results[(t, n)] = r
            row(t, "renderer", r, f"×{r['labels'] / r['seconds'] / base['rate']:.0f} baseline "
                                  f"(CPU ×{r['labels'] / r['cpu_seconds'] / base['cpu_rate']:.0f})")
            os.unlink(tmp / f"{t}-{n}.pdf")
        r = run_child("render", t, str(small), str(tmp / f"{t}-noaccel.pdf"), "1")
        row(t, "renderer, no rl_accel", r, f"rl_accel gives ×{results[(t, small)]['cpu_rate'] / (r['labels'] / r['cpu_seconds']):.2f} (CPU)")
        mem = results[(t, large)]["maxrss_mb"] / results[(t, small)]["maxrss_mb"]
        line(f"{t:<14} peak memory {large:,} vs {small:,} labels: ×{mem:.2f}")
        report["runs"].append({"template": t, "what": "memory ratio", "ratio": mem})

    # two workers against one, on the large A4 batch: chunk files, then join
    from backend.labels import render, templates

    t = TEMPLATES[0]
    tmpl = templates.load(t)
    if args.split_only:
        results[(t, large)] = r = run_child("render", t, str(large), str(tmp / "one.pdf"), "0")
        row(t, "renderer, one process", r)
    plan = render.plan_chunks(1, large, tmpl)
    half = plan[(len(plan) + 1) // 2 - 1][1]
    d1, d2 = tmp / "w1", tmp / "w2"
    d1.mkdir()
    d2.mkdir()
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--child", "chunks", t, str(a), str(b), str(d)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for a, b, d in ((1, half, d1), (half + 1, large, d2))]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    joined = render.join_chunks(outs[0]["files"] + outs[1]["files"], tmp / "joined.pdf",
                                title=render.pdf_title(tmpl, __import__("backend.labels.samples", fromlist=["x"]).sample_batch()))
    two = time.perf_counter() - start
    one = results[(t, large)]["seconds"]
    same = joined.sha256 == results[(t, large)]["sha256"]
    line(f"{t:<14} two worker processes: {large:,} labels in {two:.1f} s wall (workers {outs[0]['seconds']:.1f} s and "
         f"{outs[1]['seconds']:.1f} s, join included) against {one:.1f} s in one process: ×{one / two:.2f}; "
         f"identical bytes: {same}; load average after: {os.getloadavg()[0]:.1f}")
    report["two_workers"] = {"labels": large, "seconds": two, "one_process_seconds": one, "speedup": one / two,
                             "identical": same}
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "labels.json").write_text(json.dumps(report, indent=2))
    line(f"written {out / 'labels.json'}")
    for p in sorted(tmp.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
