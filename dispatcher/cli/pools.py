"""``dispatcher pools``: what each warm pool holds; ``pools reconcile`` and ``pools run``,
the older names of ``dispatcher worker pass`` and ``dispatcher worker run``."""

import click
from flask.cli import with_appcontext

from .. import pools
from .base import service_errors
from .worker import pass_command, run_command, selected_pools


@click.group("pools")
def pools_group():
    """Warm pools: what each holds (and the worker's older names)."""


# The names of the worker's commands before it ran more than the pools.
pools_group.add_command(pass_command, name="reconcile")
pools_group.add_command(run_command, name="run")


@pools_group.command("status")
@with_appcontext
@service_errors
def status_command():
    """Show what each pool holds, by state and cloud, and each cloud's last failure."""
    selected = selected_pools(())
    columns = ("booting", "free", "assigned", "faulty")
    header = f"{'POOL / CLOUD':<24} {'MIN':>4} {'MAX':>4}" + "".join(
        f" {name.upper():>8}" for name in columns
    )
    click.echo(header + "  LAST PASS / LAST ERROR")
    for spec in selected:
        shown = pools.pool_to_dict(spec)
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
