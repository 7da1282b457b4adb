"""``dispatcher worker``: the background jobs (warm pools, leases, Idempotency-Keys,
webhooks, the reconcile report), passes forever or one pass; ``dispatcher pools run``
and ``dispatcher pools reconcile`` are their older names."""

import contextlib
import signal
import threading
import time

import click
import prometheus_client
from flask import current_app
from flask.cli import with_appcontext

from .. import pools, reconcile, worker
from ..bookkeeping import ledger
from ..operations import LeaseReport
from ..pools.events import PoolReport
from ..worker import key_purge, lease_expiry, pool_pass, reconcile_report, webhook_delivery
from .base import service_errors


@click.group("worker")
def worker_group():
    """The worker: every background job, on a schedule or once."""


def selected_pools(names: tuple[str, ...]) -> list[pools.PoolSpec]:
    """The pools ``names`` (every pool if none).

    :raises click.ClickException: there are no pools.
    :raises NotFoundError: no pool of a name given.
    """
    if not pools.every():
        raise click.ClickException("no warm pools: POOLS is empty")
    return [pools.get(name) for name in names] if names else pools.every()


def _lease_summary(report: LeaseReport) -> str | None:
    """What the pass did to the leases; None when there was nothing to do."""
    if report.skipped:
        return "leases: skipped, another manager is on them"
    if not (report.warned or report.released or report.destroyed or report.problems):
        return None
    line = (
        f"leases: {report.warned} warned, {report.released} released, {report.destroyed} destroyed"
    )
    return line + "".join(f"; {problem}" for problem in report.problems)


def _summary(report: PoolReport) -> str:
    if report.skipped:
        return f"pool {report.pool}: skipped, another manager is on it"
    totals = ledger.pool_totals(report.pool)
    line = (
        f"pool {report.pool}: {report.created} created, {report.promoted} promoted, "
        f"{report.destroyed} destroyed, {report.adopted} adopted; "
        f"{totals['free']} free, {totals['booting']} booting, {totals['assigned']} assigned"
    )
    if report.failed_checks:
        line += f"; {report.failed_checks} failed their ready check"
    return line + "".join(f"; {note}" for note in report.fallbacks + report.problems)


def _shortfalls(selected, reports) -> list[str]:
    """Why each pool with fewer free VMs than its target is short."""
    found = []
    for spec, report in zip(selected, reports, strict=True):
        totals = ledger.pool_totals(spec.name)
        wanted = report.target if report.target is not None else spec.min_ready
        if totals["free"] >= wanted:
            continue
        if report.held is not None:
            why = f"{report.held} by an admin, it makes no VM"
        else:
            why = "; ".join(report.problems) or (
                "another manager is on it" if report.skipped else f"{totals['booting']} booting"
            )
        found.append(f"pool {spec.name} has {totals['free']} free of {wanted}: {why}")
    return found


def _one_pass(jobs: tuple[str, ...], selected) -> list[PoolReport]:
    """Run ``jobs`` once, saying what each did; the pools' reports."""
    reports = []
    if pool_pass.NAME in jobs:
        reports = pool_pass.run(selected)
        for report in reports:
            click.echo(_summary(report))
    if lease_expiry.NAME in jobs:
        leases = _lease_summary(lease_expiry.run())
        if leases or not selected:
            click.echo(leases or "leases: nothing to do")
    if key_purge.NAME in jobs:
        purged = key_purge.run()
        if purged:
            click.echo(f"keys: {purged} expired Idempotency-Keys deleted")
    if webhook_delivery.NAME in jobs:
        sent = webhook_delivery.run()
        if sent is not None and (sent.delivered or sent.failed or sent.given_up):
            click.echo(
                f"webhooks: {sent.delivered} delivered, {sent.failed} failed, "
                f"{sent.given_up} given up"
            )
    if reconcile_report.NAME in jobs:
        found = reconcile_report.run()
        if found is None:
            click.echo("reconcile: skipped, another worker is on it")
        else:
            numbers = ", ".join(f"{len(found.of(kind))} {kind}" for kind in reconcile.KINDS)
            click.echo(f"reconcile: {numbers}")
    return reports


@worker_group.command("pass")
@click.option(
    "--job",
    "jobs",
    multiple=True,
    type=click.Choice(list(worker.JOBS)),
    help="Only this job (repeat for more) [default: pools, leases, keys, webhooks].",
)
@click.option("--pool", "names", multiple=True, help="Only this pool (repeat for more).")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Repeat passes until every pool has its target of free VMs; exit 1 if one has not "
    "after SECONDS.",
)
@with_appcontext
@service_errors
def pass_command(jobs, names, wait):
    """Run each job once: promote, retire, adopt and refill the warm pools; release the
    leases that ended; delete the expired Idempotency-Keys; send the webhook calls that
    are due. Without POOLS, all but the pools."""
    jobs = jobs or worker.PASS
    selected = selected_pools(names) if names or pools.every() else []
    deadline = time.monotonic() + (wait or 0)
    while True:
        reports = _one_pass(jobs, selected)
        if wait is None or pool_pass.NAME not in jobs:
            return
        short = _shortfalls(selected, reports)
        if not short:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise click.ClickException(f"after {wait:g} s: " + "; ".join(short))
        time.sleep(min(1.0, left))


@worker_group.command("run")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help="Seconds between passes [default: the POOLS_INTERVAL setting, 15].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve the worker's Prometheus figures on this loopback port.",
)
@with_appcontext
@service_errors
def run_command(interval, metrics_port):
    """Run the worker: a pass over every pool, the leases and the keys, again and again,
    the webhook calls as they fall due, the reconcile report every RECONCILE_INTERVAL;
    until stopped (SIGTERM or Ctrl-C)."""
    app = current_app._get_current_object()
    selected = pools.every()
    interval = interval or app.config["POOLS_INTERVAL"]
    if metrics_port:
        prometheus_client.start_http_server(metrics_port, addr="127.0.0.1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"worker: passes over {worker.describe(selected)} every {interval:g} s")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop as SIGTERM does
        worker.run_forever(app, selected, interval, stop)
    click.echo("worker: stopped")
