"""``dispatcher reconcile``: the books checked against the clouds, and mended if asked;
``dispatcher ledger-sync``, its older form that records every orphan free."""

import click
from flask.cli import with_appcontext

from .. import operations, reconcile
from .base import service_errors

# The caller of the changes in the history.
CALLER = "command line"


@click.command("reconcile")
@click.option("--cloud", default=None, help="Only this cloud [default: every cloud].")
@click.option("--apply", is_flag=True, help="Apply the fixes [default: a dry run].")
@click.option(
    "--destroy-orphans",
    is_flag=True,
    help="Destroy the orphans that no pool here tagged (with --apply).",
)
@click.option(
    "--record-orphans",
    is_flag=True,
    help="Record the orphans that no pool here tagged as FREE in the ledger (with --apply).",
)
@with_appcontext
@service_errors
def reconcile_command(cloud, apply, destroy_orphans, record_orphans):
    """Show what the books and the clouds disagree on (orphans, ghosts, mismatches) and
    each fix; with --apply, apply them. Exit 1 when a cloud could not be listed."""
    if destroy_orphans and record_orphans:
        raise click.UsageError("--destroy-orphans and --record-orphans: one or the other")
    _reconcile(cloud, apply, destroy_orphans, record_orphans)


@click.command("ledger-sync")
@click.option("--cloud", default=None, help="Only this cloud [default: every cloud].")
@with_appcontext
@service_errors
def ledger_sync_command(cloud):
    """Record the VMs the clouds have and the ledger lacks as free, and mend the rest:
    `dispatcher reconcile --apply --record-orphans`, under its older name."""
    _reconcile(cloud, apply=True, destroy_orphans=False, record_orphans=True)


def _reconcile(cloud, apply: bool, destroy_orphans: bool, record_orphans: bool) -> None:
    found = operations.reconcile_books(
        cloud, CALLER, apply, destroy_orphans=destroy_orphans, record_orphans=record_orphans
    )
    for finding in found.findings:
        click.echo(
            f"{finding.kind[:-1]:<8} {finding.cloud} {finding.id_vm} "
            f"({finding.hostname or '-'}) books {finding.ledger_state or '-'}, "
            f"cloud {finding.cloud_state or '-'}, pool {finding.pool or '-'}: {finding.fix}"
        )
    numbers = ", ".join(f"{len(found.of(kind))} {kind}" for kind in reconcile.KINDS)
    click.echo(f"{numbers} ({'applied' if apply else 'dry run'})")
    failed = [entry for entry in found.clouds if entry["status"] != "ok"]
    if failed:
        raise click.ClickException(
            "not every cloud was listed: " + "; ".join(entry["message"] for entry in failed)
        )
