"""login and logout."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from pybox.errors import UsageError

__all__ = ["register"]


def _read_password(password: Optional[str], password_stdin: bool) -> str:
    if password_stdin:
        if password is not None:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        return sys.stdin.readline().rstrip("\r\n")
    if password is not None:
        print("WARNING! Using --password on the command line is insecure. Use --password-stdin.", file=sys.stderr)
        return password
    if not sys.stdin.isatty():
        raise UsageError("no password: use --password-stdin, or run on a terminal to be asked")
    import getpass

    return getpass.getpass("Password: ")


def login(
    registry: str = typer.Argument(..., metavar="REGISTRY"),
    username: Optional[str] = typer.Option(None, "-u", "--username"),
    password: Optional[str] = typer.Option(None, "-p", "--password", help="Insecure: prefer --password-stdin."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    authfile: Optional[str] = typer.Option(None, "--authfile", help="Where to store it (default ~/.config/pybox/auth.json)."),
    tls_verify: str = typer.Option("true", "--tls-verify", flag_value="true", is_flag=False, metavar="BOOL"),
) -> None:
    """Log in to a registry: the credentials are checked, then stored (mode 0600)."""
    from pybox.cli.images import parse_bool
    from pybox.registry.credentials import Credentials, own_auth_file
    from pybox.registry.login import login as do_login, registry_host

    host = registry_host(registry)
    if username is None:
        if not sys.stdin.isatty() or password_stdin:
            raise UsageError("no user name: pass -u USER")
        username = input("Username: ").strip()
    secret = _read_password(password, password_stdin)
    if not username or not secret:
        raise UsageError("a user name and a password are both needed")
    do_login(host, Credentials(username=username, password=secret, source="pybox login"),
             authfile=own_auth_file(authfile), tls_verify=parse_bool(tls_verify, "--tls-verify"))
    print("Login Succeeded!")


def logout(
    registry: str = typer.Argument(..., metavar="REGISTRY"),
    authfile: Optional[str] = typer.Option(None, "--authfile"),
) -> None:
    """Forget the credentials stored for a registry."""
    from pybox.registry.credentials import own_auth_file
    from pybox.registry.login import logout as do_logout, registry_host

    host = registry_host(registry)
    do_logout(host, authfile=own_auth_file(authfile))
    print(f"Removed login credentials for {host}")


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
