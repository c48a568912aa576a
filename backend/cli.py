"""The `chenpi` command: serve, worker, db upgrade, demo, import, users."""
from __future__ import annotations

import logging
import sys

import click

from .config import setting

log = logging.getLogger("chenpi.cli")


def _app():
    from . import create_app

    return create_app()


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """chenpi-trace: traceability for Xinhui chenpi (新会陈皮)."""
    app = _app()
    ctx.obj = app
    ctx.with_resource(app.app_context())


# --- database ----------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def db_upgrade(app, revision: str) -> None:
    """Apply every migration up to REVISION (default: head)."""
    from .migrations import upgrade

    upgrade(app.config["SQLALCHEMY_DATABASE_URI"], revision)
    click.echo(f"database at {revision}: {_safe_url(app.config['SQLALCHEMY_DATABASE_URI'])}")


@db.command("revision")
@click.option("-m", "--message", required=True, help="Slug for the file name, e.g. 'label batches'.")
@click.pass_obj
def db_revision(app, message: str) -> None:
    """(Developers) autogenerate a migration from the models."""
    from .migrations import revision

    revision(app.config["SQLALCHEMY_DATABASE_URI"], message)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- serving -----------------------------------------------------------------------------------
@main.command()
@click.option("--host", default=lambda: setting("HOST"), show_default="HOST or 127.0.0.1")
@click.option("--port", default=lambda: int(setting("PORT")), type=int, show_default="PORT or 5000")
@click.option("--workers", default=None, type=int, help="gunicorn workers (default: WEB_CONCURRENCY, else CPU cores + 1).")
@click.pass_obj
def serve(app, host: str, port: int, workers: int | None) -> None:
    """Serve the API with gunicorn (one process in the embedded mode)."""
    from .gunicorn_app import run

    run(app, host, port, workers)


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--scan-drain/--no-scan-drain", default=True, show_default=True,
              help="Also drain the consumer scan stream into the database (a child process).")
@click.argument("queues", nargs=-1)
@click.pass_obj
def worker(app, burst: bool, scan_drain: bool, queues: tuple[str, ...]) -> None:
    """Run an RQ worker on the app's queues (high, default, render, low), and the scan drain."""
    from .extensions import QUEUES, redis
    from .worker import AppWorker

    if redis.embedded:
        raise click.ClickException("REDIS_URL is not set: in the embedded mode jobs run in-process; no worker is needed.")
    names = queues or QUEUES
    # On the render queue the worker also re-enqueues render jobs of dead workers, at start and
    # then periodically (backend/worker.py).
    stale = app.config["CHENPI"].RENDER_STALE_SECONDS if "render" in names else None
    w = AppWorker([redis.queue(name) for name in names], connection=redis.client, render_stale_seconds=stale)
    # The scan stream drain runs beside the RQ worker: a child process while it works, or one
    # pass to the end of the stream in a burst.
    from .scans import jobs as scan_jobs

    drain = None if burst or not scan_drain else scan_jobs.spawn_drain()
    try:
        # the scheduler runs RQ's delayed retries (a failed render is retried after 5 s, then 30 s)
        w.work(burst=burst, with_scheduler=True)
    finally:
        scan_jobs.stop_child(drain)
    if burst and scan_drain:
        scan_jobs.run_drain(once=True)


# --- demo --------------------------------------------------------------------------------------
@main.command()
@click.option("--serve/--no-serve", "and_serve", default=True, help="Serve the API after loading.")
@click.option("--scale", type=click.FloatRange(0.001, 1.0), default=1.0, show_default=True,
              help="Fraction of the seed's registry to load (a small demo for tests).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, type=int, show_default=True)
@click.pass_obj
def demo(app, and_serve: bool, scale: float, host: str, port: int) -> None:
    """Migrate, load the seed-scale demo data (once), make demo users, and serve."""
    from .extensions import db as database
    from .migrations import upgrade
    from .registry import demo as demo_data

    upgrade(app.config["SQLALCHEMY_DATABASE_URI"])
    counts = demo_data.load_demo(database.session, progress=True, scale=scale)
    database.session.commit()
    click.echo("demo data: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    from .chain import demo as chain_demo_data

    season = chain_demo_data.load_chain_demo(database.session)  # a season of trades, lots, sales (once)
    database.session.commit()
    click.echo("chain demo: " + ", ".join(f"{k} {v:,}" if k != "season" else f"{k} {v}" for k, v in season.items()))
    tokens = demo_data.demo_tokens(database.session)
    database.session.commit()
    click.echo("demo tokens (new each run; use as 'Authorization: Bearer TOKEN'):")
    for name, (role, token) in tokens.items():
        click.echo(f"  {role:<9} {name:<16} {token}")
    from .labels import demo as labels_demo_data

    labels = labels_demo_data.load_labels_demo(database.session)  # one batch along the label path (once)
    if labels is not None:
        click.echo(f"labels demo: batch {labels.batch_id} of {labels.operator_name} (operator {labels.operator_id}), "
                   f"lot {labels.lot_id}: " + ", ".join(f"{k} {v}" for k, v in labels.counts().items() if k != "batch"))
        click.echo("  scan these (the QR's URLs; the admin token lists the batch):")
        for verdict, url in labels.urls.items():
            click.echo(f"  {verdict:<9} {url}")
    click.echo(f"API docs: http://{host}:{port}/api/docs")
    # Close this session's transaction: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), so one left open here would lock the served requests out.
    database.session.remove()
    if and_serve:
        from .extensions import redis
        from .gunicorn_app import run
        from .scans import jobs as scan_jobs

        # With a real Redis the consumer scans need their drain (embedded mode drains in-process).
        drain = None if redis.embedded else scan_jobs.spawn_drain()
        try:
            run(app, host, port, None)
        finally:
            scan_jobs.stop_child(drain)


# --- import ------------------------------------------------------------------------------------
@main.command("import")
@click.argument("kind", type=click.Choice(["growers", "plots", "operators"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.pass_obj
def import_(app, kind: str, file: str, dry_run: bool) -> None:
    """Import growers, plots or operators from a CSV or XLSX file (all or nothing)."""
    from .extensions import db as database
    from .registry import importing

    report = importing.import_file(database.session, kind, file, dry_run=dry_run, progress=True)
    for err in report.errors:
        click.echo(f"{file}:{err.line}: {err.column}: {err.reason}", err=True)
    if report.errors:
        database.session.rollback()
        raise click.ClickException(f"{len(report.errors)} problem(s) in {report.rows} rows; nothing imported.")
    if dry_run:
        database.session.rollback()
        click.echo(f"dry run: {report.rows} rows are valid; nothing written.")
    else:
        database.session.commit()
        click.echo(f"imported {report.inserted} {kind}.")


# --- users -------------------------------------------------------------------------------------
@main.group()
def users() -> None:
    """API users and tokens."""


def _user_error(err) -> click.ClickException:
    """The error's message and the field details ("operator_id: Required for this role.")."""
    details = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in (err.errors or {}).items())
    return click.ClickException(err.message + (f" ({details})" if details else ""))


@users.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["admin", "operator", "inspector", "agent"]))
@click.option("--operator", "operator_id", type=int, help="Operator id (for operator and agent users).")
@click.pass_obj
def users_create(app, name: str, role: str, operator_id: int | None) -> None:
    """Create a user and print a new API token (shown once)."""
    from .auth import service
    from .errors import AppError
    from .extensions import db as database

    try:
        user = service.create_user(database.session, name, role, operator_id)
        token = service.issue_token(database.session, user)
    except AppError as err:
        database.session.rollback()
        raise _user_error(err) from None
    database.session.commit()
    click.echo(token)


@users.command("token")
@click.argument("name")
@click.pass_obj
def users_token(app, name: str) -> None:
    """Print a new token for an existing user."""
    from .auth import service
    from .errors import AppError
    from .extensions import db as database

    try:
        token = service.issue_token(database.session, service.find_user(database.session, name))
    except AppError as err:
        raise _user_error(err) from None
    database.session.commit()
    click.echo(token)


@users.command("revoke")
@click.argument("name")
@click.pass_obj
def users_revoke(app, name: str) -> None:
    """Deactivate a user and revoke all its tokens."""
    from .auth import service
    from .errors import AppError
    from .extensions import db as database

    try:
        count = service.revoke_user(database.session, service.find_user(database.session, name))
    except AppError as err:
        raise _user_error(err) from None
    database.session.commit()
    click.echo(f"revoked {name}: {count} token(s)")


# --- labels ------------------------------------------------------------------------------------
@main.group()
def labels() -> None:
    """Certification-trademark labels: templates and previews."""


def _label_error(err) -> click.ClickException:
    details = "; ".join(f"{k}: {' '.join(v)}" for k, v in (err.errors or {}).items())
    return click.ClickException(err.message + (f"\n  {details}" if details and details not in err.message else ""))


@labels.command("templates")
def labels_templates() -> None:
    """List the templates in label_templates/ and check each one."""
    from .errors import AppError
    from .labels import templates as tpl

    bad = 0
    for slug in tpl.available():
        try:
            t = tpl.load(slug)
        except AppError as err:
            bad += 1
            click.echo(f"{slug:<18} INVALID {err.message}")
            continue
        where = f"{t.cols}×{t.rows} on {t.page_w:g}×{t.page_h:g} mm" if t.kind == "sheet" else "roll"
        click.echo(f"{slug:<18} {t.label_w:g}×{t.label_h:g} mm, {where}, {t.dpi} dpi: {t.name}")
    if bad:
        raise click.ClickException(f"{bad} invalid template(s)")


@labels.command("preview")
@click.argument("template")
@click.option("--count", "-n", type=click.IntRange(1, 1_000_000), default=None,
              help="How many sample labels (default: one page).")
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="The PDF (or .zpl) to write.")
@click.option("--outline", is_flag=True, help="Draw each label's outline, to check alignment on plain paper.")
@click.option("--zpl", "as_zpl", is_flag=True, help="Write ZPL for a Zebra-style thermal printer (roll templates).")
@click.pass_obj
def labels_preview(app, template: str, count: int | None, out: str, outline: bool, as_zpl: bool) -> None:
    """Render COUNT made-up labels with TEMPLATE (a name in label_templates/ or a .toml path).

    The codes are samples (key id 0) under PUBLIC_BASE_URL: they never resolve as genuine, so a
    merchant can print them to test a template on their own printer. No database is needed.
    """
    from tqdm import tqdm

    from .errors import AppError
    from .labels import render, samples, templates as tpl, zpl

    base = app.config["CHENPI"].PUBLIC_BASE_URL
    try:
        t = tpl.load(template)
        n = count or t.per_page
        rows = samples.sample_rows(base, n, pins=t.pin is not None)
        with tqdm(total=n, unit="label", disable=n < 2000, file=sys.stderr) as bar:
            if as_zpl:
                with open(out, "wb") as f:
                    result = zpl.render_zpl(t, samples.sample_batch(), rows, f, progress=bar.update)
            else:
                result = render.render_pdf(t, samples.sample_batch(), rows, out, outline=outline, progress=bar.update)
    except AppError as err:
        raise _label_error(err) from None
    what = "ZPL" if as_zpl else f"{result.pages:,} page(s)"
    click.echo(f"{out}: {result.labels:,} sample label(s), {what}, {result.bytes:,} bytes, QR version "
               f"{result.qr_version} with {result.module_dots}-dot modules at {t.dpi} dpi; sha256 {result.sha256}")



def _acting(name: str, *roles: str):
    """The Actor of a named user, who must have one of `roles` (those of the matching API route):
    the CLI obeys the same roles and tenancy as the API."""
    from .auth import service as auth
    from .errors import AppError
    from .extensions import db as database
    from .http import Actor

    user = auth.find_user(database.session, name)
    if not user.active:
        raise AppError("auth.forbidden", f"User {user.name!r} is deactivated.")
    if user.role not in roles:
        raise AppError("auth.forbidden", f"Role {user.role!r} may not do this; allowed: {', '.join(roles)}.")
    return Actor(user_id=user.id, name=user.name, role=user.role, operator_id=user.operator_id)


def _as_user(name: str, roles: tuple[str, ...], fn):
    """fn(actor) in one transaction as user `name`: commit, or roll back and turn an AppError
    into a CLI error."""
    from .errors import AppError
    from .extensions import db as database

    try:
        result = fn(_acting(name, *roles))
    except AppError as err:
        database.session.rollback()
        raise _label_error(err) from None
    database.session.commit()
    return result


MERCHANT, ADMIN = ("operator", "admin"), ("admin",)  # the roles of the matching API routes
AS_USER = click.option("--as", "as_user", required=True, metavar="USER",
                       help="The user to act as (name or id): an admin, or the operator's own user.")


def _gtin_option(_ctx, _param, value):
    """--gtin as the API stores it (14 digits, check digit verified)."""
    from .labels import gtin

    if value is None:
        return None
    try:
        return gtin.normalise(value)
    except gtin.GtinError as err:
        raise click.BadParameter(err.message) from None


@labels.command("apply")
@AS_USER
@click.option("--product", required=True)
@click.option("--quantity", "-n", type=click.IntRange(1), required=True)
@click.option("--gtin", callback=_gtin_option,
              help="The product's GS1 GTIN (8/12/13/14 digits): the labels also resolve at /01/{gtin}/21/{code}.")
@click.option("--operator", "operator_id", type=int, help="Operator id (admins apply on an operator's behalf).")
@click.option("--lot", "lot_id", type=int, help="The peel lot the labels are for (its id).")
@click.option("--template", help="Label template (default: LABEL_DEFAULT_TEMPLATE).")
@click.option("--note")
@click.pass_obj
def labels_apply(app, as_user, product, quantity, gtin, operator_id, lot_id, template, note) -> None:
    """Apply for QUANTITY labels (申领); prints the application id."""
    from .extensions import db as database
    from .labels import service

    values = {"product": product, "quantity": quantity, "gtin": gtin, "operator_id": operator_id, "lot_id": lot_id,
              "template": template, "note": note}
    application, _ = _as_user(as_user, MERCHANT, lambda actor: service.apply(database.session, actor, values))
    click.echo(f"application {application.id}: {application.quantity:,} labels for operator "
               f"{application.operator_id}, {application.status}")


@labels.command("approve")
@AS_USER
@click.argument("application_id", type=int)
@click.option("--quantity", "-n", type=click.IntRange(1), help="Approve fewer than applied for.")
@click.pass_obj
def labels_approve(app, as_user, application_id, quantity) -> None:
    """Approve an application (admins) and issue its batch of serialized codes."""
    from .extensions import db as database
    from .labels import service

    batch = _as_user(as_user, ADMIN,
                     lambda actor: service.approve(database.session, actor, application_id, quantity))
    click.echo(f"batch {batch.id}: serials {batch.first_serial}-{batch.last_serial} ({batch.quantity:,} labels), "
               f"template {batch.template}")


@labels.command("reject")
@AS_USER
@click.argument("application_id", type=int)
@click.option("--reason", required=True)
@click.pass_obj
def labels_reject(app, as_user, application_id, reason) -> None:
    """Reject an application with a reason (admins)."""
    from .extensions import db as database
    from .labels import service

    _as_user(as_user, ADMIN, lambda actor: service.reject(database.session, actor, application_id, reason))
    click.echo(f"application {application_id}: rejected")


@labels.command("render")
@AS_USER
@click.argument("batch_id", type=int)
@click.option("--first", type=click.IntRange(1), help="First serial (default: the batch's first).")
@click.option("--last", type=click.IntRange(1), help="Last serial (default: the batch's last).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the worker, with a progress bar.")
@click.pass_obj
def labels_render(app, as_user, batch_id, first, last, wait) -> None:
    """Queue a PDF render of a batch (or a range) on the `render` workers."""
    import time

    from tqdm import tqdm

    from .extensions import db as database
    from .labels import service
    from .labels.models import RenderJob

    job = _as_user(as_user, MERCHANT,
                   lambda actor: service.request_render(database.session, actor, batch_id, first, last))
    job_id, total = job.id, job.pages_total
    service.enqueue(job_id)  # after the commit, as the API does
    click.echo(f"render job {job_id}: {total:,} page(s) queued", err=True)
    if not wait:
        return
    with tqdm(total=total, unit="page", file=sys.stderr) as bar:
        while True:
            database.session.expire_all()
            job = database.session.get(RenderJob, job_id)
            bar.update(job.pages_done - bar.n)
            if job.status in ("finished", "failed"):
                break
            time.sleep(0.5)
    database.session.rollback()
    if job.status == "failed":
        raise click.ClickException(f"render job {job_id} failed: {job.error}")
    click.echo(f"render job {job_id}: finished, {job.pages_done:,} page(s), {job.size:,} bytes, sha256 {job.sha256}")


@labels.command("print")
@AS_USER
@click.argument("render_id", type=int)
@click.option("--copies", type=click.IntRange(1, 10), default=1, show_default=True)
@click.option("--reprint", is_flag=True, help="Print labels again (a jammed sheet): recorded per label, with --reason.")
@click.option("--reason", help="Why the labels are printed again (required with --reprint).")
@click.pass_obj
def labels_print(app, as_user, render_id, copies, reprint, reason) -> None:
    """Queue a finished render for the operator's print agent; a label is printed once unless reprinted."""
    from .extensions import db as database
    from .labels import service

    job, _ = _as_user(as_user, MERCHANT, lambda actor: service.request_print(
        database.session, actor, render_id, copies=copies, reprint=reprint, reason=reason))
    click.echo(f"print job {job.id} ({job.kind}): render {job.render_job_id} queued for the print agent")


@labels.command("activate")
@AS_USER
@click.argument("batch_id", type=int)
@click.option("--first", type=click.IntRange(1), required=True)
@click.option("--last", type=click.IntRange(1), required=True)
@click.option("--lot", "lot_id", type=int, help="Bind the labels to this lot.")
@click.option("--pack-g", type=click.IntRange(1), help="Pack size in grams.")
@click.pass_obj
def labels_activate(app, as_user, batch_id, first, last, lot_id, pack_g) -> None:
    """Activate printed labels FIRST..LAST of a batch (applied to product)."""
    from .extensions import db as database
    from .labels import service

    out = _as_user(as_user, MERCHANT, lambda actor: service.change_range(
        database.session, actor, batch_id, "activate", first, last, lot_id=lot_id, pack_g=pack_g))
    click.echo(f"batch {batch_id}: {out['changed']:,} label(s) activated")


@labels.command("status")
@AS_USER
@click.argument("batch_id", type=int)
@click.pass_obj
def labels_status(app, as_user, batch_id) -> None:
    """A batch's labels counted by state."""
    from .extensions import db as database
    from .labels import service

    batch = _as_user(as_user, MERCHANT, lambda actor: service.get_batch(database.session, actor, batch_id))
    counts = service.state_counts(database.session, batch.id)
    click.echo(f"batch {batch.id} ({batch.status}): " + ", ".join(f"{n:,} {s}" for s, n in sorted(counts.items())))


# --- the trade chain ---------------------------------------------------------------------------
@main.group()
def chain() -> None:
    """The trade chain (fruit trades, lots, sales)."""


@chain.command("demo")
@click.option("--season", type=int, default=None, help="Harvest year (default: the latest finished season).")
@click.pass_obj
def chain_demo(app, season: int | None) -> None:
    """Load a realistic season of trades, lots, sales and alerts on the registry (once)."""
    import time

    from .chain import demo as chain_demo_data
    from .extensions import db as database

    started = time.perf_counter()
    try:
        counts = chain_demo_data.load_chain_demo(database.session, season=season)
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None
    database.session.commit()
    click.echo("chain demo: " + ", ".join(f"{k} {v}" if k == "season" else f"{k} {v:,}" for k, v in counts.items())
               + f" ({time.perf_counter() - started:.1f} s)")

# --- field photos ------------------------------------------------------------------------------
@main.group()
def photos() -> None:
    """Inspectors' check-in photos in STORAGE_DIR."""


@photos.command("sweep")
@click.option("--older-than-hours", type=click.FloatRange(1), default=24, show_default=True,
              help="Only files at least this old (younger ones may belong to an upload in flight).")
@click.option("--dry-run", is_flag=True, help="List the orphans; delete nothing.")
@click.pass_obj
def photos_sweep(app, older_than_hours: float, dry_run: bool) -> None:
    """Delete photo files no photo row names (stored by a request whose commit failed)."""
    from .extensions import db as database
    from .fieldwork import service as fieldwork
    from .storage import get_storage

    orphans = fieldwork.sweep_orphan_photos(database.session, get_storage(), older_than_hours * 3600, dry_run)
    for key in orphans:
        click.echo(key)
    click.echo(f"{len(orphans):,} orphan photo files {'found' if dry_run else 'deleted'}")


# --- consumer scans ------------------------------------------------------------------------------
@main.group()
def scans() -> None:
    """Consumer scans: the stream drain and the Redis counters."""


@scans.command("drain")
@click.option("--once", is_flag=True, help="Drain to the end of the stream, then exit.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.pass_obj
def scans_drain(app, once: bool, batch: int) -> None:
    """Move scan events from the Redis stream into scan_events (chenpi worker also runs this)."""
    from .extensions import redis
    from .scans import jobs as scan_jobs

    if redis.embedded:
        raise click.ClickException("REDIS_URL is not set: in the embedded mode scans are drained in-process.")
    n = scan_jobs.run_drain(batch=batch, once=once)
    click.echo(f"scan drain: {n:,} events handled")


@scans.command("rebuild-counters")
@click.pass_obj
def scans_rebuild(app) -> None:
    """Drain the stream, then recompute every scan counter in Redis from scan_events."""
    from .extensions import db as database
    from .extensions import redis
    from .scans import service as scan_service

    drained = scan_service.drain_all(database.session, redis.client)
    result = scan_service.rebuild_counters(database.session, redis.client)
    database.session.commit()
    click.echo(f"drained {drained:,} pending events; counters rebuilt from {result['events']:,} events "
               f"of {result['codes']:,} codes")


@scans.command("dead-letters")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--replay", is_flag=True, help="Put the listed dead letters (or IDS) back on the scan stream.")
@click.option("--delete", is_flag=True, help="Drop the dead letters IDS for good.")
@click.argument("ids", nargs=-1)
@click.pass_obj
def scans_dead_letters(app, limit: int, replay: bool, delete: bool, ids: tuple[str, ...]) -> None:
    """List the scan events the database refused (dead letters), replay or delete them."""
    from .extensions import redis
    from .scans import service as scan_service

    if replay and delete:
        raise click.UsageError("--replay or --delete, not both.")
    if delete and not ids:
        raise click.UsageError("--delete needs the IDS of the dead letters to drop.")
    if replay:
        chosen = list(ids) or [d["id"] for d in scan_service.list_dead_letters(redis.client, limit)]
        click.echo(f"{scan_service.replay_dead_letters(redis.client, chosen):,} dead letters put back on the scan stream")
        return
    if delete:
        click.echo(f"{scan_service.delete_dead_letters(redis.client, list(ids)):,} dead letters deleted")
        return
    counts = scan_service.dead_letters(redis.client)
    click.echo(f"{counts['waiting']:,} dead letters waiting ({counts['total']:,} ever)")
    for d in scan_service.list_dead_letters(redis.client, limit):
        click.echo(f"{d['id']}  {d['failed_at']}  {d['error']}\n    {d['event']}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
