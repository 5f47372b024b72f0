"""Container commands: run."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from pybox.cli.app import state

__all__ = ["register"]


def run(
    image: str = typer.Argument(..., metavar="IMAGE"),
    command: Optional[List[str]] = typer.Argument(None, metavar="[COMMAND [ARG...]]"),
    name: Optional[str] = typer.Option(None, "--name", help="A unique name for the container."),
    rm: bool = typer.Option(False, "--rm", help="Remove the container when it exits."),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep standard input open."),
    tty: bool = typer.Option(False, "-t", "--tty", help="Allocate a pseudo-terminal."),
    entrypoint: Optional[str] = typer.Option(None, "--entrypoint", help="Replace the image's entrypoint."),
    env: List[str] = typer.Option([], "-e", "--env", help="K=V, or K to pass the host's value."),
    env_file: List[str] = typer.Option([], "--env-file", help="Read K=V lines from a file."),
    workdir: Optional[str] = typer.Option(None, "-w", "--workdir", help="Working directory (created if missing)."),
    user: Optional[str] = typer.Option(None, "-u", "--user", help="user|uid[:group|gid]"),
    group_add: List[str] = typer.Option([], "--group-add", help="Another supplementary group."),
    hostname: Optional[str] = typer.Option(None, "-h", "--hostname", help="Container host name."),
    volume: List[str] = typer.Option([], "-v", "--volume", help="HOST:CONTAINER[:ro] bind mount."),
    mount: List[str] = typer.Option([], "--mount", help="type=bind,source=...,target=...[,readonly]"),
    memory: Optional[str] = typer.Option(None, "-m", "--memory", help="Memory limit, e.g. 512m."),
    memory_swap: Optional[str] = typer.Option(None, "--memory-swap", help="Memory plus swap; -1 unlimited."),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="CPUs, e.g. 1.5."),
    cpu_shares: Optional[int] = typer.Option(None, "-c", "--cpu-shares", help="Relative CPU weight."),
    cpuset_cpus: Optional[str] = typer.Option(None, "--cpuset-cpus", help="CPUs allowed, e.g. 0-1."),
    pids_limit: Optional[int] = typer.Option(None, "--pids-limit", help="Maximum number of processes."),
    cap_add: List[str] = typer.Option([], "--cap-add", help="Add a capability (or ALL)."),
    cap_drop: List[str] = typer.Option([], "--cap-drop", help="Drop a capability (or ALL)."),
    privileged: bool = typer.Option(False, "--privileged", help="All capabilities and devices, no masks."),
    init: bool = typer.Option(False, "--init", help="Run tini as PID 1: it reaps orphans and forwards signals."),
    read_only: bool = typer.Option(False, "--read-only", help="Mount the root filesystem read-only."),
    security_opt: List[str] = typer.Option([], "--security-opt",
                                           help="no-new-privileges, seccomp=unconfined|PROFILE.json, systempaths=unconfined"),
    tmpfs: List[str] = typer.Option([], "--tmpfs", help="PATH[:OPTIONS] tmpfs mount, e.g. /run:size=64m"),
    shm_size: Optional[str] = typer.Option(None, "--shm-size", help="Size of /dev/shm (default 64m)."),
    ulimit: List[str] = typer.Option([], "--ulimit", help="NAME=SOFT[:HARD], e.g. nofile=1024:2048"),
    sysctl: List[str] = typer.Option([], "--sysctl", help="Namespaced sysctl KEY=VALUE."),
    device: List[str] = typer.Option([], "--device", help="HOST[:CONTAINER[:rwm]] device node."),
    stop_signal: Optional[str] = typer.Option(None, "--stop-signal", help="Signal that stops the container."),
    label: List[str] = typer.Option([], "-l", "--label", help="KEY=VALUE metadata."),
    network: str = typer.Option("none", "--network", "--net", help="none (default) or host; bridge comes later."),
    pull: str = typer.Option("missing", "--pull", help="missing, always or never."),
    platform: Optional[str] = typer.Option(None, "--platform", help="os/arch[/variant] when pulling."),
) -> None:
    """Run a command in a new container."""
    from pybox.registry.ensure import ensure_image
    from pybox.runtime.run import run_image
    from pybox.runtime.runconfig import RunOptions

    options = RunOptions(
        command=tuple(command or ()), entrypoint=entrypoint, env=tuple(env), env_files=tuple(env_file),
        workdir=workdir, user=user, group_add=tuple(group_add), hostname=hostname, name=name, remove=rm,
        interactive=interactive, tty=tty, volumes=tuple(volume), mounts=tuple(mount), memory=memory,
        memory_swap=memory_swap, cpus=cpus, cpu_shares=cpu_shares, cpuset_cpus=cpuset_cpus,
        pids_limit=pids_limit, cap_add=tuple(cap_add), cap_drop=tuple(cap_drop), privileged=privileged,
        network=network, pull=pull, platform=platform, init=init, read_only=read_only,
        security_opt=tuple(security_opt), tmpfs=tuple(tmpfs), shm_size=shm_size, ulimits=tuple(ulimit),
        sysctls=tuple(sysctl), devices=tuple(device), stop_signal=stop_signal, labels=tuple(label),
    )
    store = state.store()
    result = run_image(store, ensure_image(store, image, policy=pull, platform=platform), options)
    sys.stdout.flush()
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_interspersed_args": False})(run)
