"""``dispatcher pools``: what each warm pool holds, an admin's override of one (as the API
changes it); ``pools reconcile`` and ``pools run``, the older names of ``dispatcher worker
pass`` and ``dispatcher worker run``."""

import click
from flask.cli import with_appcontext

from .. import operations, pools
from ..pools import overrides
from ..validation import POOL_OVERRIDE, validate
from .base import COMMAND_LINE, service_errors
from .worker import pass_command, run_command, selected_pools


@click.group("pools")
def pools_group():
    """Warm pools: what each holds, an override of one (and the worker's older names)."""


# The names of the worker's commands before it ran more than the pools.
pools_group.add_command(pass_command, name="reconcile")
pools_group.add_command(run_command, name="run")


@pools_group.command("status")
@with_appcontext
@service_errors
def status_command():
    """Show what each pool holds, by state and cloud, against its sizes and its target
    now (TARGET: free or booting; what set it in brackets), what an admin's override
    changes, and each cloud's last failure."""
    selected = selected_pools(())
    columns = ("booting", "free", "assigned", "faulty")
    header = f"{'POOL / CLOUD':<24} {'MIN':>4} {'MAX':>4} {'TARGET':>6}" + "".join(
        f" {name.upper():>8}" for name in columns
    )
    click.echo(header + "  LAST PASS / LAST ERROR")
    for spec in selected:
        shown = pools.pool_to_dict(spec)
        counts = "".join(f" {shown[name]:>8}" for name in columns)
        changed = f"  {_changes(shown)}" if shown["override"] is not None else ""
        target = shown["target"]
        click.echo(
            f"{spec.name:<24} {shown['min_ready']:>4} {shown['max_total']:>4}"
            f" {target['free']:>6}{counts}  {shown['last_pass'] or 'never'}"
            f"  ({target['because']}){changed}"
        )
        for cloud in shown["clouds"]:
            counts = "".join(f" {cloud[name]:>8}" for name in columns)
            error = cloud["last_error"]
            last = f"{error['time']} {error['message']}" if error else "-"
            click.echo(f"  {cloud['cloud']:<22} {'':>4} {'':>4} {'':>6}{counts}  {last}")


def _changes(shown: dict) -> str:
    """What the override of the pool ``shown`` (as the API shows it) changes."""
    line = overrides.describe(shown["name"], shown["override"], shown["configured"])
    return line.removeprefix(f"pool {shown['name']}: ")


def _override(name: str, changes: dict) -> None:
    """Apply ``changes`` as ``PATCH /api/v1/pools/<name>`` would; print what is overridden."""
    shown = operations.override_pool(
        pools.get(name), validate(POOL_OVERRIDE, changes), COMMAND_LINE
    )
    click.echo(overrides.describe(shown["name"], shown["override"], shown["configured"]))


def _size(option: str, value: str) -> int | None:
    """An option's size: none (the configured one) or a whole number."""
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter("a whole number, or none", param_hint=option) from None


@pools_group.command("set")
@click.argument("name")
@click.option("--min-ready", help="VMs kept ready (none: the configured number).")
@click.option("--max-total", help="VMs at most (none: the configured number).")
@with_appcontext
@service_errors
def set_command(name, min_ready, max_total):
    """Override the sizes of the pool NAME until reset; a size not given stays as it was."""
    changes = {}
    for key, value in (("min_ready", min_ready), ("max_total", max_total)):
        if value is not None:
            changes[key] = _size(f"--{key.replace('_', '-')}", value)
    if not changes:
        raise click.UsageError("give --min-ready, --max-total or both")
    _override(name, changes)


@pools_group.command("pause")
@click.argument("name")
@with_appcontext
@service_errors
def pause_command(name):
    """Stop the creations of the pool NAME; its VMs stay and are handed out."""
    _override(name, {"paused": True})


@pools_group.command("drain")
@click.argument("name")
@with_appcontext
@service_errors
def drain_command(name):
    """Drain the pool NAME: no creations, its free VMs retired, its assigned ones destroyed
    when released."""
    _override(name, {"draining": True})


@pools_group.command("resume")
@click.argument("name")
@with_appcontext
@service_errors
def resume_command(name):
    """Neither pause nor drain the pool NAME any more (its sizes stay as set)."""
    _override(name, {"paused": False, "draining": False})


@pools_group.command("reset")
@click.argument("name")
@with_appcontext
@service_errors
def reset_command(name):
    """Clear the override of the pool NAME: POOLS applies again."""
    spec = pools.get(name)
    operations.clear_pool_override(spec, COMMAND_LINE)
    click.echo(f"pool {spec.name}: override cleared, configured values apply")
