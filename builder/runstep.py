"""RUN: a container over the stage's layers with a fresh upper dir, which becomes the new layer.

The command is what Docker runs: the exec form as written; the shell form
through the SHELL in effect. A heredoc that is the whole command is the
script: with a ``#!`` line it is a file the container executes, otherwise
the shell runs its text; heredocs inside a longer command go to the shell
as written, which feeds them to the command's stdin (``RUN python3 <<EOF``).
The environment is the image's plus the build args in scope that no ENV
overrides; network is the host's until pybox has bridge networking.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from pybox.builder.instructions import Run
from pybox.builder.metadata import shell_of
from pybox.builder.parser import parse_heredoc
from pybox.builder.state import ImageState
from pybox.errors import StepFailed, UsageError
from pybox.image import Descriptor
from pybox.store import Store
from pybox.store.fs import make_temp_name, remove_tree
from pybox.store.layerfs import is_opaque, lookup

__all__ = ["RunPlan", "plan_run", "run_step"]

_SCRIPT_DIR = "/dev/pipes"
_NETWORKS = {"default": "host", "host": "host", "none": "none"}


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    argv: tuple[str, ...]
    # A heredoc script to bind at /dev/pipes/<name>: (name, content).
    script: tuple[str, str] | None = None
    network: str = "host"


def plan_run(state: ImageState, instruction: Run) -> RunPlan:
    if instruction.mounts:
        raise UsageError("RUN --mount is not supported by pybox build")
    network = _NETWORKS.get(instruction.network or "default")
    if network is None:
        raise UsageError(f"RUN --network={instruction.network}: expected default, host or none")
    command = instruction.command
    if isinstance(command, tuple):
        return RunPlan(argv=command, network=network)
    shell = shell_of(state)
    docs = instruction.heredocs
    if not docs:
        return RunPlan(argv=(*shell, command), network=network)
    sole = parse_heredoc(command.strip())
    if len(docs) == 1 and sole is not None and sole.name == docs[0].name:
        content = docs[0].content
        if content.startswith("#!"):
            path = f"{_SCRIPT_DIR}/{docs[0].name}"
            return RunPlan(argv=(path,), script=(docs[0].name, content), network=network)
        return RunPlan(argv=(*shell, content), network=network)
    # The shell reads the heredocs itself, from the text that follows the command line.
    text = command + "".join(f"\n{doc.content}{doc.name}" for doc in docs)
    return RunPlan(argv=(*shell, text), network=network)


def run_step(store: Store, state: ImageState, plan: RunPlan, build_env: dict[str, str], *,
             output: int | None) -> tuple[str, Descriptor]:
    """Run ``plan`` on ``state``; returns the (diff_id, descriptor) of what it changed.

    ``build_env`` holds the build args for the environment.
    """
    # The runtime is imported only when a step runs: a cached build never needs it.
    from pybox.builder.commit import commit_layer
    from pybox.runtime.process import ExecFailed
    from pybox.runtime.run import Rootfs, run_rootfs
    from pybox.runtime.runconfig import RunOptions

    image_env = state.env
    extra = tuple(f"{k}={v}" for k, v in build_env.items() if k not in image_env)
    config = {key: state.config[key] for key in ("Env", "User", "WorkingDir") if state.config.get(key)}
    options = RunOptions(command=plan.argv, entrypoint="", network=plan.network, remove=True, env=extra)
    upper = make_temp_name(store.tmp_dir, "run")
    scratch = make_temp_name(store.tmp_dir, "script")
    try:
        if plan.script is not None:
            name, content = plan.script
            scratch.mkdir()
            script = scratch / name
            script.write_text(content, encoding="utf-8", errors="surrogateescape")
            os.chmod(script, 0o755)
            options = replace(options, volumes=(f"{script}:{_SCRIPT_DIR}/{name}:ro",))
        rootfs = Rootfs(image_id="", image_name="(build step)", config=config, diff_ids=state.diff_ids)
        shown = " ".join(plan.argv)
        try:
            result = run_rootfs(store, rootfs, options, keep_upper=upper, output=output, stop_on_interrupt=True)
        except ExecFailed as e:
            # A command that cannot start is the build's failure too, not pybox's.
            raise StepFailed(f"RUN {shown}: {e} (exit code {e.exit_code})") from e
        if result.exit_code != 0:
            raise StepFailed(f"RUN {shown}: the command exited with code {result.exit_code}")
        lower_dirs = [store.layers.diff_path(d) for d in state.diff_ids]
        _remove_mount_points(upper, lower_dirs)
        return commit_layer(store, upper, below=lower_dirs[-1] if lower_dirs else None)
    finally:
        remove_tree(upper)
        remove_tree(scratch)



def _remove_mount_points(upper: Path, lower_dirs: list[Path]) -> None:
    """Drop what the runtime created only to mount over (BuildKit's mount stubs), and parents made for them.

    A mount point that the image lacked and the command left empty is not
    the command's work; left in, every first RUN would add /proc, /sys and
    empty /etc/hosts files to the image. A parent that was only copied up
    to hold such a stub (``/etc``) goes too, once empty.
    """
    from pybox.runtime.rootfs import MOUNT_POINTS

    for point in MOUNT_POINTS:
        if lookup(lower_dirs, point, follow=False).mode is not None:
            continue
        path = point
        while path != "/" and _remove_stub(upper / path.lstrip("/"), lookup(lower_dirs, path, follow=False).mode):
            path = os.path.dirname(path)


def _remove_stub(full: Path, lower_mode: int | None) -> bool:
    try:
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            if lower_mode is not None and (lower_mode != st.st_mode or is_opaque(full)):
                return False
            os.rmdir(full)  # fails unless empty
        elif stat.S_ISREG(st.st_mode) and st.st_size == 0 and lower_mode is None:
            os.unlink(full)
        else:
            return False
    except OSError:
        return False
    return True

