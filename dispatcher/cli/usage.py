"""``dispatcher usage``: the usage report of a period, as ``GET /api/v1/usage`` gives it
to an admin, printed as a table, CSV or JSON."""

import json

import click
from flask.cli import with_appcontext

from .. import fields, usage
from ..errors import InvalidRequestError
from .base import service_errors

# The columns of the table, and how each figure is shown there.
COLUMNS = (
    ("assigned_seconds", "held h", lambda seconds: f"{seconds / 3600:.2f}"),
    ("idle_seconds", "idle h", lambda seconds: f"{seconds / 3600:.2f}"),
    ("faulty_seconds", "faulty h", lambda seconds: f"{seconds / 3600:.2f}"),
    ("cost", "cost", lambda cost: f"{cost:.2f}"),
    ("assigns", "assigns", str),
    ("releases", "releases", str),
    ("wait_p50", "wait p50 s", lambda wait: "-" if wait is None else f"{wait:g}"),
    ("wait_p95", "wait p95 s", lambda wait: "-" if wait is None else f"{wait:g}"),
    ("peak_held", "peak", str),
)


def _moment(option: str, text: str | None):
    if text is None:
        return None
    found = fields.moment(text)
    if found is None:
        raise click.BadParameter(fields.MOMENT_FORMAT, param_hint=option)
    return found


def table(found: dict) -> str:
    """The report as aligned columns: one line per group, then the total."""
    names = found["group_by"]
    header = [*names, *(title for _, title, _ in COLUMNS)]
    lines = []
    for group in found["groups"]:
        named = ["-" if group[name] is None else str(group[name]) for name in names]
        lines.append(named + [show(group[key]) for key, _, show in COLUMNS])
    total = found["total"]
    lines.append(["total"] + [""] * (len(names) - 1) + [show(total[k]) for k, _, show in COLUMNS])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    numeric = len(names)

    def aligned(line):
        return "  ".join(
            cell.rjust(width) if index >= numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()

    period = f"usage from {found['from']} to {found['to']}"
    return "\n".join([period, aligned(header), *map(aligned, lines)])


@click.command("usage")
@click.option("--from", "start", metavar="MOMENT", help="ISO 8601; the month's start.")
@click.option("--to", "end", metavar="MOMENT", help="ISO 8601; now by default.")
@click.option(
    "--group-by",
    default="user",
    show_default=True,
    help=f"What each line is: {usage.GROUPS_SAID}.",
)
@click.option(
    "--format",
    "shape",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@with_appcontext
@service_errors
def usage_command(start, end, group_by, shape):
    """The VM-hours held, idle in pools and faulty, their cost, the assigns, releases,
    request waits and peak held of a period, by group, with everyone's usage."""
    try:
        period = usage.period(_moment("--from", start), _moment("--to", end))
        found = usage.report(*period, usage.groups_from(group_by))
    except InvalidRequestError as exc:
        raise click.UsageError(str(exc)) from None
    if shape == "json":
        click.echo(json.dumps(found, indent=2))
    elif shape == "csv":
        click.echo(usage.usage_to_csv(found), nl=False)
    else:
        click.echo(table(found))
