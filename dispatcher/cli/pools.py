"""``dispatcher pools``: the pool manager (one pass, or passes forever) and what each pool
holds."""

import contextlib
import signal
import threading
import time

import click
import prometheus_client
from flask import current_app
from flask.cli import with_appcontext

from .. import pools
from ..pools import ledger, manager, pool_to_dict
from .base import service_errors


@click.group("pools")
def pools_group():
    """Warm pools: the pool manager, and what each pool holds."""


def _selected(names: tuple[str, ...]) -> list[pools.PoolSpec]:
    if not pools.every():
        raise click.ClickException("no warm pools: POOLS is empty")
    return [pools.get(name) for name in names] if names else pools.every()


def _lease_summary(report: manager.LeaseReport) -> str | None:
    """What the pass did to the leases; None when there was nothing to do."""
    if report.skipped:
        return "leases: skipped, another manager is on them"
    if not (report.warned or report.released or report.destroyed or report.problems):
        return None
    line = (
        f"leases: {report.warned} warned, {report.released} released, {report.destroyed} destroyed"
    )
    return line + "".join(f"; {problem}" for problem in report.problems)


def _summary(report: manager.PoolReport) -> str:
    if report.skipped:
        return f"pool {report.pool}: skipped, another manager is on it"
    totals = ledger.totals(report.pool)
    line = (
        f"pool {report.pool}: {report.created} created, {report.promoted} promoted, "
        f"{report.destroyed} destroyed, {report.adopted} adopted; "
        f"{totals['free']} free, {totals['booting']} booting, {totals['assigned']} assigned"
    )
    return line + "".join(f"; {problem}" for problem in report.problems)


def _shortfalls(selected, reports) -> list[str]:
    """Why each pool below min_ready free is short."""
    found = []
    for spec, report in zip(selected, reports, strict=True):
        totals = ledger.totals(spec.name)
        if totals["free"] >= spec.min_ready:
            continue
        why = "; ".join(report.problems) or (
            "another manager is on it" if report.skipped else f"{totals['booting']} booting"
        )
        found.append(f"pool {spec.name} has {totals['free']} free of {spec.min_ready}: {why}")
    return found


@pools_group.command("reconcile")
@click.option("--pool", "names", multiple=True, help="Only this pool (repeat for more).")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Repeat passes until every pool has min_ready free VMs; exit 1 if one has not "
    "after SECONDS.",
)
@with_appcontext
@service_errors
def reconcile_command(names, wait):
    """Run one pass of the pool manager: promote, retire, adopt, refill; release the
    leases that ended; send the webhook calls that are due. Without POOLS, only the
    leases and their webhooks."""
    selected = _selected(names) if names or pools.every() else []
    deadline = time.monotonic() + (wait or 0)
    while True:
        reports = manager.run_pass(selected)
        for report in reports:
            click.echo(_summary(report))
        leases = _lease_summary(manager.upkeep())
        if leases or not selected:
            click.echo(leases or "leases: nothing to do")
        sent = manager.send_webhooks()
        if sent is not None and (sent.delivered or sent.failed or sent.given_up):
            click.echo(
                f"webhooks: {sent.delivered} delivered, {sent.failed} failed, "
                f"{sent.given_up} given up"
            )
        if wait is None:
            return
        short = _shortfalls(selected, reports)
        if not short:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise click.ClickException(f"after {wait:g} s: " + "; ".join(short))
        time.sleep(min(1.0, left))


@pools_group.command("run")
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
    help="Serve the manager's Prometheus figures on this loopback port.",
)
@with_appcontext
@service_errors
def run_command(interval, metrics_port):
    """Run the pool manager: a pass over every pool and the leases, again and again,
    until stopped (SIGTERM or Ctrl-C)."""
    app = current_app._get_current_object()
    selected = pools.every()
    interval = interval or app.config["POOLS_INTERVAL"]
    if metrics_port:
        prometheus_client.start_http_server(metrics_port, addr="127.0.0.1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"pool manager: passes over {manager.describe(selected)} every {interval:g} s")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop as SIGTERM does
        manager.run_forever(app, selected, interval, stop)
    click.echo("pool manager: stopped")


@pools_group.command("status")
@with_appcontext
@service_errors
def status_command():
    """Show what each pool holds, by state and cloud, and each cloud's last failure."""
    selected = _selected(())
    columns = ("booting", "free", "assigned", "faulty")
    header = f"{'POOL / CLOUD':<24} {'MIN':>4} {'MAX':>4}" + "".join(
        f" {name.upper():>8}" for name in columns
    )
    click.echo(header + "  LAST PASS / LAST ERROR")
    for spec in selected:
        shown = pool_to_dict(spec)
        counts = "".join(f" {shown[name]:>8}" for name in columns)
        click.echo(
            f"{spec.name:<24} {spec.min_ready:>4} {spec.max_total:>4}{counts}"
            f"  {shown['last_pass'] or 'never'}"
        )
        for cloud in shown["clouds"]:
            counts = "".join(f" {cloud[name]:>8}" for name in columns)
            error = cloud["last_error"]
            last = f"{error['time']} {error['message']}" if error else "-"
            click.echo(f"  {cloud['cloud']:<22} {'':>4} {'':>4}{counts}  {last}")
