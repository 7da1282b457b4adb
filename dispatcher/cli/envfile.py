"""``dispatcher env-file``: the production settings and new secrets, written once to a
file that every shell and systemd read, so that every process shares the same secrets."""

import os
import re
import secrets
from pathlib import Path

import click

# The secrets every process of one installation must share, generated here.
SECRET_VARIABLES = ("DISPATCHER_SECRET_KEY", "DISPATCHER_PASSWORD_SALT")
_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Characters a value may hold unquoted for both a POSIX shell and systemd.
_PLAIN = re.compile(r"[A-Za-z0-9@%+=:,./_-]*")


def env_line(name: str, value: str) -> str:
    """``NAME=value`` as both ``. file`` (with ``set -a``) and systemd's EnvironmentFile=
    read it.

    :raises click.BadParameter: a name or value no quoting makes read the same by both.
    """
    if not _NAME.fullmatch(name):
        raise click.BadParameter(f"{name!r} is not an environment variable's name")
    if _PLAIN.fullmatch(value):
        return f"{name}={value}"
    if any(character in value for character in "'\\\n\r"):
        raise click.BadParameter(f"{name}: a value with a quote, backslash or line break")
    return f"{name}='{value}'"


def _pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals:
        raise click.BadParameter(f"{text!r} is not NAME=VALUE")
    if name in SECRET_VARIABLES:
        raise click.BadParameter(f"{name} is generated here, not given")
    return name, value


@click.command("env-file")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("settings", nargs=-1, metavar="[NAME=VALUE]...")
def env_file_command(path: Path, settings: tuple[str, ...]):
    """Write the production settings and new secrets to a new env file, PATH.

    PATH, readable by its owner only, gets DISPATCHER_CONFIG=production, a new secret
    key and password salt, and each NAME=VALUE given (DATABASE_URL, ...).

    Every shell that runs a dispatcher command reads it with
    `set -a; . PATH; set +a`, and systemd with EnvironmentFile=PATH. An existing file is
    never replaced: new secrets would end every token and refuse every password.
    """
    given = dict(_pair(text) for text in settings)
    values = {
        "DISPATCHER_CONFIG": "production",
        **{name: secrets.token_urlsafe(48) for name in SECRET_VARIABLES},
        **given,
    }
    text = "".join(f"{env_line(name, value)}\n" for name, value in values.items())
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(
            f"{path} exists: its secrets are the installation's; remove it to start anew"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    click.echo(f"wrote {path} (mode 600): {', '.join(values)}")
