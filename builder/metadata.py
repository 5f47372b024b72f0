"""The instructions that change only the image config, as pure functions of the state.

Each takes the state and the (expanded) instruction and returns the next
state, history entry included. Field names and value forms are those of
the Docker image config, which BuildKit writes: ``ExposedPorts`` and
``Volumes`` are sets (objects of empty objects), ``Healthcheck`` durations
are nanoseconds, ``Shell`` and ``OnBuild`` are kept as BuildKit keeps them.
"""

from __future__ import annotations

import json
import posixpath
import re
import signal
from dataclasses import replace

from pybox.builder.instructions import (
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    Stopsignal,
    User,
    Volume,
)
from pybox.builder.state import ImageState, history_entry
from pybox.errors import UsageError

__all__ = ["DEFAULT_SHELL", "apply_metadata", "shell_of", "workdir_path"]

DEFAULT_SHELL = ("/bin/sh", "-c")

MetadataInstruction = (
    Cmd | Entrypoint | Env | Expose | Healthcheck | Label | Maintainer | Onbuild | Shell | Stopsignal | User | Volume
)

# nat.ParsePortSpec: PORT[-END][/PROTO], the protocol tcp, udp or sctp.
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?")
_PROTOCOLS = ("tcp", "udp", "sctp")
_MAX_SIGNAL = 64


def shell_of(state: ImageState) -> tuple[str, ...]:
    return tuple(state.config.get("Shell") or DEFAULT_SHELL)


def workdir_path(state: ImageState, path: str) -> str:
    """WORKDIR ``path``, relative to the current one, as a clean absolute path."""
    joined = posixpath.normpath(posixpath.join("/", state.config.get("WorkingDir") or "/", path))
    return "/" + joined.lstrip("/")


def _command(state: ImageState, command: tuple[str, ...] | str) -> list[str]:
    # The shell form runs through the SHELL in effect at this point, as Docker records it.
    return list(command) if isinstance(command, tuple) else [*shell_of(state), command]


def _ports(ports: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = dict()
    for text in ports:
        match = _PORT.fullmatch(text)
        if match is None:
            raise UsageError(f"invalid EXPOSE port {text!r}: expected PORT[-END][/tcp|udp|sctp]")
        start = int(match.group(1))
        end = int(match.group(2) or start)
        proto = (match.group(3) or "tcp").lower()
        if proto not in _PROTOCOLS:
            raise UsageError(f"invalid EXPOSE protocol in {text!r}: expected tcp, udp or sctp")
        if not 0 < start <= end <= 65535:
            raise UsageError(f"invalid EXPOSE port range {text!r}")
        for port in range(start, end + 1):
            out[f"{port}/{proto}"] = {}
    return out


def _check_signal(text: str) -> str:
    """Docker's signal.ParseSignal: a number, or a name with or without SIG."""
    if text.isdigit():
        if not 0 < int(text) <= _MAX_SIGNAL:
            raise UsageError(f"invalid STOPSIGNAL {text!r}: no such signal")
        return text
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name.startswith(("SIGRTMIN", "SIGRTMAX")) or hasattr(signal.Signals, name):
        return text
    raise UsageError(f"invalid STOPSIGNAL {text!r}: no such signal")


def _healthcheck(instruction: Healthcheck) -> dict:
    if instruction.test is None:
        return {"Test": ["NONE"]}
    check: dict = {"Test": list(instruction.test)}
    for key, value in (("Interval", instruction.interval), ("Timeout", instruction.timeout),
                       ("StartPeriod", instruction.start_period), ("StartInterval", instruction.start_interval),
                       ("Retries", instruction.retries)):
        if value:
            check[key] = value
    return check


def apply_metadata(state: ImageState, instruction: MetadataInstruction, *, cmd_set: bool = False) -> ImageState:
    """``state`` after ``instruction``, with its history entry (an empty layer).

    ``cmd_set``: the stage has run a CMD of its own, which an ENTRYPOINT keeps.
    """
    created_by = instruction.original
    match instruction:
        case Cmd():
            command = _command(state, instruction.command)
            state = state.with_config(Cmd=command)
            created_by = f"CMD {json.dumps(command)}"
        case Entrypoint():
            command = _command(state, instruction.command)
            # An ENTRYPOINT drops a CMD inherited from the base image (BuildKit's cmdSet).
            state = state.with_config(Entrypoint=command, **({} if cmd_set else {"Cmd": None}))
            created_by = f"ENTRYPOINT {json.dumps(command)}"
        case Env():
            state = state.with_env(list(instruction.pairs))
        case Label():
            labels = dict(state.config.get("Labels") or {})
            labels.update(instruction.pairs)
            state = state.with_config(Labels=labels)
        case Maintainer():
            state = replace(state, author=instruction.name)
        case Expose():
            ports = dict(state.config.get("ExposedPorts") or {})
            ports.update(_ports(instruction.ports))
            state = state.with_config(ExposedPorts=ports)
        case Volume():
            volumes = dict(state.config.get("Volumes") or {})
            volumes.update({path: {} for path in instruction.paths})
            state = state.with_config(Volumes=volumes)
        case User():
            state = state.with_config(User=instruction.user)
        case Stopsignal():
            state = state.with_config(StopSignal=_check_signal(instruction.signal))
        case Healthcheck():
            state = state.with_config(Healthcheck=_healthcheck(instruction))
        case Shell():
            state = state.with_config(Shell=list(instruction.command))
        case Onbuild():
            state = state.with_config(OnBuild=[*(state.config.get("OnBuild") or []), instruction.trigger])
    return state.add_history(history_entry(created_by, empty_layer=True))
