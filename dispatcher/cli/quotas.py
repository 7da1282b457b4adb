"""``dispatcher quotas``: the quota rules, as the admins' API shows and changes them."""

import json

import click
from flask.cli import with_appcontext

from .. import operations, quotas
from ..validation import QUOTA, validate
from .base import COMMAND_LINE, service_errors

SCOPE = click.Choice(quotas.SCOPES)


@click.group("quotas")
def quotas_group():
    """Show and change the quota rules."""


def _whose(scope: str, name: str | None) -> str | None:
    if scope == "default" and name is not None:
        raise click.UsageError("the default rule takes no name")
    if scope != "default" and name is None:
        raise click.UsageError(f"a {scope} rule needs the name of the {scope}")
    return name


def _limit(option: str, value: str | None):
    """An option's value as the API takes it: none (no limit), a whole number or a
    number; absent: not set."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return "none"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter("a number, or none for no limit", param_hint=option) from None


def _line(rule: dict) -> str:
    whose = "default" if rule["name"] is None else f"{rule['scope']} {rule['name']}"
    limits = [
        f"{key}={json.dumps(rule[key])}" for key in quotas.LIMITS + ("period",) if key in rule
    ]
    used = rule.get("used")
    shown = [whose, rule["pool"] or "any pool", " ".join(limits) or "-", rule["source"]]
    if used is not None:
        hours = f"{used['vm_hours']:g} VM-hours in {used['period'] // 3600:g} h"
        shown.append(f"used: {used['vms']} VMs, {hours}")
    return "\t".join(shown)


@quotas_group.command("show")
@click.argument("scope", type=SCOPE, required=False)
@click.argument("name", required=False)
@click.option("--user", "standing_of", metavar="USER", help="What binds USER, and its use.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@with_appcontext
@service_errors
def show_command(scope, name, standing_of, as_json):
    """Every rule, or those of SCOPE (user, role, default) and NAME, with what those they
    bind use now; with --user, what binds that user in each pool."""
    if standing_of is not None:
        found = quotas.standing(standing_of)
        click.echo(json.dumps(found, indent=2) if as_json else _standing_lines(found))
        return
    rules = quotas.every_rule() if scope is None else quotas.rules_of(scope, _whose(scope, name))
    if as_json:
        click.echo(json.dumps(rules, indent=2))
        return
    for rule in rules:
        click.echo(_line(rule))
    if not rules:
        click.echo("no quota rule")


def _standing_lines(found: dict) -> str:
    lines = [f"user {found['user']} (roles: {', '.join(found['roles']) or '-'})"]
    for entry in found["pools"]:
        where = entry["pool"] or "any pool"
        if not entry["allowed"]:
            lines.append(f"{where}\tnot allowed")
            continue
        parts = []
        for key in ("max_vms", "max_vm_hours", "max_lease"):
            bound = entry[key]
            limit = "no limit" if bound["limit"] is None else f"{bound['limit']:g}"
            used = f" (used {bound['used']:g})" if "used" in bound else ""
            parts.append(f"{key}={limit}{used}")
        lines.append(f"{where}\t" + " ".join(parts))
    return "\n".join(lines)


@quotas_group.command("set")
@click.argument("scope", type=SCOPE)
@click.argument("name", required=False)
@click.option("--pool", help="Only for this pool.")
@click.option("--max-vms", help="VMs held at once (none: no limit).")
@click.option("--max-vm-hours", help="VM-hours in the period (none: no limit).")
@click.option("--period", help="The period of --max-vm-hours, in seconds (a day by default).")
@click.option("--max-lease", help="The longest lease, in seconds (none: no limit).")
@click.option(
    "--pools", "pool_list", help='The pools allowed, comma-separated ("all": all of them).'
)
@with_appcontext
@service_errors
def set_command(scope, name, pool, max_vms, max_vm_hours, period, max_lease, pool_list):
    """Set the rule of SCOPE (user, role, default) and NAME to the limits given, in place
    of the rule set before; a limit not given comes from the next rule."""
    body = {"pool": pool} if pool is not None else {}
    for key, value in (
        ("max_vms", max_vms),
        ("max_vm_hours", max_vm_hours),
        ("period", period),
        ("max_lease", max_lease),
    ):
        number = _limit(f"--{key.replace('_', '-')}", value)
        if number is not None:
            body[key] = None if number == "none" else number
    if pool_list is not None:
        names = [part.strip() for part in pool_list.split(",") if part.strip()]
        body["pools"] = None if names == ["all"] else names
    rule = operations.set_quota(scope, _whose(scope, name), validate(QUOTA, body), COMMAND_LINE)
    click.echo(_line(rule))


@quotas_group.command("clear")
@click.argument("scope", type=SCOPE)
@click.argument("name", required=False)
@click.option("--pool", help="The rule for this pool.")
@with_appcontext
@service_errors
def clear_command(scope, name, pool):
    """Remove the rule set for SCOPE (user, role, default) and NAME; the QUOTAS setting's
    rule, if any, applies again."""
    restored = operations.clear_quota(scope, _whose(scope, name), pool, COMMAND_LINE)
    click.echo("removed" + (f"; the setting's rule applies: {_line(restored)}" if restored else ""))
