"""``dispatcher users``: users, their roles and their tokens."""

import click
from flask.cli import with_appcontext

from .. import auth
from ..models import ROLES
from .base import service_errors


@click.group("users")
def users_group():
    """Manage users, their roles and their tokens."""


@users_group.command("create")
@click.argument("username")
@click.option("--email", default=None, help="The user's email address (optional).")
@click.option(
    "--role", "roles", multiple=True, type=click.Choice(sorted(ROLES)), help="Repeat for more."
)
@click.password_option(help="The password [default: asked for, twice].")
@with_appcontext
@service_errors
def create_user_command(username, email, roles, password):
    """Create an active user."""
    auth.create_user(username, password, roles=roles, email=email)
    click.echo(f"created user {username!r} with roles {', '.join(roles) or '(none)'}")


@users_group.command("list")
@with_appcontext
def list_users_command():
    """List the users, their state and roles."""
    for user in auth.list_users():
        state = "active" if user.active else "inactive"
        roles = ",".join(sorted(role.name for role in user.roles)) or "-"
        click.echo(f"{user.username}\t{state}\t{roles}")


@users_group.command("activate")
@click.argument("username")
@with_appcontext
@service_errors
def activate_command(username):
    """Let the user in again."""
    auth.set_active(username, True)
    click.echo(f"user {username!r} activated")


@users_group.command("deactivate")
@click.argument("username")
@with_appcontext
@service_errors
def deactivate_command(username):
    """Keep the user out: no new token, and the tokens held end for good."""
    auth.set_active(username, False)
    click.echo(f"user {username!r} deactivated")


@users_group.command("add-role")
@click.argument("username")
@click.argument("role", type=click.Choice(sorted(ROLES)))
@with_appcontext
@service_errors
def add_role_command(username, role):
    """Give the user a role."""
    changed = auth.add_role(username, role)
    click.echo(f"user {username!r} {'now has' if changed else 'already had'} role {role}")


@users_group.command("remove-role")
@click.argument("username")
@click.argument("role", type=click.Choice(sorted(ROLES)))
@with_appcontext
@service_errors
def remove_role_command(username, role):
    """Take a role from the user."""
    changed = auth.remove_role(username, role)
    click.echo(f"user {username!r} {'no longer has' if changed else 'did not have'} role {role}")


@users_group.command("set-password")
@click.argument("username")
@click.password_option(help="The new password [default: asked for, twice].")
@click.option("--keep-tokens", is_flag=True, help="Let the tokens the user holds keep working.")
@with_appcontext
@service_errors
def set_password_command(username, password, keep_tokens):
    """Change the user's password; the tokens the user holds end, unless --keep-tokens."""
    auth.set_password(username, password, keep_tokens=keep_tokens)
    kept = "kept" if keep_tokens else "revoked"
    click.echo(f"password of {username!r} changed; its tokens {kept}")


@users_group.command("revoke-tokens")
@click.argument("username")
@with_appcontext
@service_errors
def revoke_tokens_command(username):
    """Invalidate every token the user holds."""
    auth.revoke_tokens(auth.get_user(username))
    click.echo(f"tokens of {username!r} revoked")
