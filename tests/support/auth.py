"""Credentials for the test registry: htpasswd files and credential helpers."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bcrypt

__all__ = ["credential_helper", "helper_calls", "htpasswd_config"]

# bcrypt's minimum cost: distribution checks the password on every request,
# and the default cost (12) would add a quarter second to each of them.
_BCRYPT_ROUNDS = 4

# The helper protocol (github.com/docker/docker-credential-helpers,
# credentials/error.go): `get` of an unknown server prints this on stdout and
# exits 1; clients compare the text to tell "no credentials" from a failure.
_NOT_FOUND = "credentials not found in native keychain"

_HELPER = '''\
#!{python} -I
"""docker-credential-{name}, written by the pybox tests: only `get` is served."""
import json
import sys

STORE = json.loads({store!r})
LOG = {log!r}

action = sys.argv[1] if len(sys.argv) > 1 else ""
server = sys.stdin.read().strip() if action == "get" else ""
with open(LOG, "a") as log:
    log.write(json.dumps({{"action": action, "server": server}}) + "\\n")
if action != "get":
    sys.stdout.write("unsupported action: " + action + "\\n")
    sys.exit(1)
if server not in STORE:
    sys.stdout.write({not_found!r} + "\\n")
    sys.exit(1)
username, secret = STORE[server]
json.dump({{"ServerURL": server, "Username": username, "Secret": secret}}, sys.stdout)
'''


def htpasswd_config(
    workdir: Path, users: Mapping[str, str], *, realm: str = "pybox-test"
) -> dict[str, Any]:
    """Write `workdir/htpasswd` (bcrypt) and return the `auth:` section for Registry(auth=...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "htpasswd"
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(_BCRYPT_ROUNDS)).decode()}\n"
        for user, password in users.items()
    ]
    path.write_text("".join(lines))
    return {"htpasswd": {"realm": realm, "path": str(path)}}


def credential_helper(
    bin_dir: Path, name: str, store: Mapping[str, tuple[str, str]]
) -> Path:
    """Write an executable `bin_dir/docker-credential-NAME` serving `store`.

    `store` maps the server string the client sends on stdin (exactly, e.g.
    `127.0.0.1:5000` or `https://index.docker.io/v1/`) to (user, secret).
    Each call is logged, without secrets, next to the script; read the log
    with helper_calls(). Put `bin_dir` on PATH for the client to find it.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(_HELPER.format(
        python=sys.executable, name=name, store=json.dumps(dict(store)),
        log=str(_log_path(script)), not_found=_NOT_FOUND,
    ))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def helper_calls(script: Path) -> list[tuple[str, str]]:
    """(action, server) of every call of the helper so far, in order."""
    log = _log_path(script)
    if not log.exists():
        return []
    return [
        (entry["action"], entry["server"])
        for entry in map(json.loads, log.read_text().splitlines())
    ]


def _log_path(script: Path) -> Path:
    return script.with_name(script.name + ".log")
