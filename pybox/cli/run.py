"""``pybox run``, parsed with argparse rather than typer.

Starting a container is the command that must start fast: typer (and the
pydantic it brings) costs more than a container's whole start-up, so this
command has a parser of its own that imports only what running needs.
"""

from __future__ import annotations

import argparse

from pybox.cli.argparsing import ArgumentError, Parser
from pybox.cli.common import fail, state

__all__ = ["parser", "run_command"]

_USAGE = "pybox run [OPTIONS] IMAGE [COMMAND [ARG...]]"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pybox run", usage=_USAGE, add_help=False,
                description="Run a command in a new container.")
    add = p.add_argument
    add("--help", action="help", help="Show this message and exit.")
    add("--name", help="A unique name for the container.")
    add("--rm", action="store_true", help="Remove the container when it exits.")
    add("-i", "--interactive", action="store_true", help="Keep standard input open.")
    add("-t", "--tty", action="store_true", help="Allocate a pseudo-terminal.")
    add("--init", action="store_true", help="Run tini as PID 1: it reaps orphans and forwards signals.")
    add("--entrypoint", help="Replace the image's entrypoint ('' resets it).")
    add("-e", "--env", action="append", default=[], help="K=V, or K to pass the host's value.")
    add("--env-file", action="append", default=[], help="Read K=V lines from a file.")
    add("-w", "--workdir", help="Working directory (created if missing).")
    add("-u", "--user", help="user|uid[:group|gid]")
    add("--group-add", action="append", default=[], help="Another supplementary group.")
    add("-h", "--hostname", help="Container host name.")
    add("-v", "--volume", action="append", default=[], help="HOST:CTR[:ro], NAME:CTR[:ro] or CTR.")
    add("--mount", action="append", default=[], help="type=bind|volume|tmpfs,source=...,target=...")
    add("--tmpfs", action="append", default=[], help="PATH[:OPTIONS] tmpfs mount, e.g. /run:size=64m")
    add("--read-only", action="store_true", help="Mount the root filesystem read-only.")
    add("-m", "--memory", help="Memory limit, e.g. 512m.")
    add("--memory-swap", help="Memory plus swap; -1 unlimited.")
    add("--cpus", help="CPUs, e.g. 1.5.")
    add("-c", "--cpu-shares", type=int, help="Relative CPU weight.")
    add("--cpuset-cpus", help="CPUs allowed, e.g. 0-1.")
    add("--pids-limit", type=int, help="Maximum number of processes.")
    add("--shm-size", help="Size of /dev/shm (default 64m).")
    add("--ulimit", action="append", default=[], help="NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    add("--sysctl", action="append", default=[], help="Namespaced sysctl KEY=VALUE.")
    add("--device", action="append", default=[], help="HOST[:CONTAINER[:rwm]] device node.")
    add("--cap-add", action="append", default=[], help="Add a capability (or ALL).")
    add("--cap-drop", action="append", default=[], help="Drop a capability (or ALL).")
    add("--privileged", action="store_true", help="All capabilities and devices, no masks, no seccomp.")
    add("--security-opt", action="append", default=[],
        help="no-new-privileges, seccomp=unconfined|PROFILE.json, systempaths=unconfined")
    add("--stop-signal", help="Signal that stops the container.")
    add("-l", "--label", action="append", default=[], help="KEY=VALUE metadata.")
    add("--network", "--net", default="none", help="none (default) or host; bridge comes later.")
    add("--pull", default="missing", help="missing, always or never.")
    add("--platform", help="os/arch[/variant] when pulling.")
    add("image", metavar="IMAGE")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    return p


def _options(ns: argparse.Namespace):  # noqa: ANN202 - lazily imported type
    from pybox.runtime.runconfig import RunOptions

    return RunOptions(
        command=tuple(ns.command), entrypoint=ns.entrypoint, env=tuple(ns.env), env_files=tuple(ns.env_file),
        workdir=ns.workdir, user=ns.user, group_add=tuple(ns.group_add), hostname=ns.hostname, name=ns.name,
        remove=ns.rm, interactive=ns.interactive, tty=ns.tty, volumes=tuple(ns.volume), mounts=tuple(ns.mount),
        memory=ns.memory, memory_swap=ns.memory_swap, cpus=ns.cpus, cpu_shares=ns.cpu_shares,
        cpuset_cpus=ns.cpuset_cpus, pids_limit=ns.pids_limit, cap_add=tuple(ns.cap_add),
        cap_drop=tuple(ns.cap_drop), privileged=ns.privileged, network=ns.network, pull=ns.pull,
        platform=ns.platform, init=ns.init, read_only=ns.read_only, security_opt=tuple(ns.security_opt),
        tmpfs=tuple(ns.tmpfs), shm_size=ns.shm_size, ulimits=tuple(ns.ulimit), sysctls=tuple(ns.sysctl),
        devices=tuple(ns.device), stop_signal=ns.stop_signal, labels=tuple(ns.label),
    )


def run_command(args: list[str]) -> int:
    """Parse ``pybox run``'s arguments and run the container; its exit status."""
    try:
        ns = parser().parse_args(args)
    except ArgumentError as e:
        return fail(f"{e} (see 'pybox run --help')")
    from pybox.registry.ensure import ensure_image
    from pybox.runtime.run import run_image

    store = state.store()
    options = _options(ns)
    result = run_image(store, ensure_image(store, ns.image, policy=ns.pull, platform=ns.platform), options)
    return result.exit_code


