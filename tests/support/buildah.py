"""buildah as the reference builder: what `pybox build` is compared with.

`buildah_build(context, workdir=...)` runs `buildah bud --layers --format
docker` (Debian's buildah 1.28) with everything it keeps under `workdir`,
and returns the image's config as buildah wrote it plus an OCI layout of the
image for `umoci unpack`. `buildah_cleanup(workdir)` (or `Buildah.cleanup`)
removes the containers, images, storage and runc state, and checks that
nothing stays mounted under `workdir`.

Choices, and why:

- Storage driver vfs. Layers are plain directories, so the storage driver
  never mounts anything on the host (overlay would, and c/storage refuses an
  overlay runroot path longer than 50 characters, which pytest's temp dirs
  are). Test images are small, so its copying costs little.
- Each buildah command runs in a private mount namespace with directories of
  `workdir` bound over `/var/lib/containers`, `/run/containers` and
  `/run/runc`: as root, c/image writes its blob-info cache to
  `/var/lib/containers/cache` whatever `--root` says, and buildah runs its
  RUN containers with runc's default state root `/run/runc`. So a test
  changes no host state, and a RUN container left by a killed build is found
  (`runc --root WORKDIR/... list`) and removed by the cleanup.
- `--format docker`: the OCI config has no Healthcheck, Shell or OnBuild, so
  buildah drops them from OCI images. `buildah push` to an `oci:` layout
  converts the config to OCI and drops them as well, so `config` is the
  stored config (`buildah inspect`), not the exported one.
- `--network none` by default: no netavark, no bridge, no iptables rules
  on the host, and no RUN step reaching past loopback (`pybox build` runs
  RUN in the host's network; pass network="host" where that matters).
  `--identity-label=false`: no `io.buildah.version` label.
  `--http-proxy=false`: the proxy variables set below stay out of RUN's
  environment.
- `--runtime runc` (crun fails on this hybrid cgroup machine) and a
  containers.conf with `default_ulimits = []` (no CAP_SYS_RESOURCE here),
  as bench/containers.conf; a policy that accepts anything, and
  `--tls-verify=false` for the test registry's plain HTTP on loopback.
- HTTP(S)_PROXY point at a closed loopback port: Go never proxies loopback
  addresses, so the test registry answers while a pull from anywhere else
  (a typo'd FROM, a short name) fails at once instead of leaving the machine.

buildah 1.28 quirks a comparison must allow for: no heredocs (`RUN <<EOF`
runs `<<EOF` and the body lines become unknown instructions); a RUN layer
also holds the mount points buildah made when the image lacks them
(RUN_MOUNT_POINTS: empty directories and empty mode-0755 files); history
`created_by` in Docker's classic format (`/bin/sh -c #(nop) ENV A=b`, `|1
V=1 /bin/sh -c echo hi` for a RUN with build args, `COPY file:<sha256> in
/dst `), with a `comment` naming the parent (`FROM <id>`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.mounts import mounts_under
from support.skip import require_root, require_tool
from support.tools import run, tool_env

__all__ = ["RUN_MOUNT_POINTS", "Buildah", "BuiltImage", "buildah_build", "buildah_cleanup", "require_buildah"]

BUILD_TIMEOUT = 600
# What buildah 1.28 leaves in a RUN step's layer when the image lacks it: the
# directories and files it mounted over (files empty, mode 0755; /etc/hosts
# and /etc/resolv.conf with network="host" only). Not image content.
RUN_MOUNT_POINTS = ("/dev", "/proc", "/run", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
_COMMAND_TIMEOUT = 120
_KILL_GRACE = 10

# As bench/containers.conf: default_ulimits = [] because raising the RUN
# process's limits needs CAP_SYS_RESOURCE, missing here (podman fails
# without it; buildah 1.28 did not, the line keeps the two alike); runc
# because crun fails on this hybrid (v1 + unified) cgroup machine. No
# systemd: cgroupfs.
_CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
# Fully qualified names only: no search registry a short name could reach.
_REGISTRIES_CONF = "unqualified-search-registries = []\n"
_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}
# Nothing listens on the discard port; see the module docstring.
_NOWHERE = "http://127.0.0.1:9"

# Host paths that a root buildah (and the runc it starts) writes whatever its
# flags say -> the mode to create a missing mount point with.
_HOST_STATE = {
    "/var/lib/containers": 0o700,  # c/image's blob-info cache
    "/run/containers": 0o755,  # auth.json lookups, netavark state
    "/run/runc": 0o700,  # runc's default --root, which buildah uses
}
# Arguments: SRC DST pairs to bind, then --, then the command (bench/lib.sh's
# BENCH_ISOLATE, with pairs instead of SRC:DST so a path may hold a colon).
_ISOLATE_SCRIPT = """
while [ "$1" != -- ]; do
    mount --bind "$1" "$2" || exit 125
    shift 2
done
shift
exec "$@"
"""


def require_buildah() -> None:
    """Skip (fail under PYBOX_TEST_STRICT=1) unless buildah can run here."""
    require_root()
    for tool in ("buildah", "runc", "umoci", "unshare"):
        require_tool(tool)


@dataclass(frozen=True, kw_only=True)
class BuiltImage:
    """An image buildah built: its config and manifest as stored, and an OCI export.

    `config` is the image config buildah wrote (Docker format: Healthcheck,
    Shell and OnBuild included); `layout:tag` is the image pushed to an OCI
    layout (there the config is converted to OCI and lacks those three).
    """

    image_id: str
    name: str
    config: dict[str, Any]
    manifest: dict[str, Any]
    layout: Path
    tag: str
    log: str  # what `buildah bud` printed, stdout then stderr

    def unpack(self, dest: Path) -> Path:
        """`umoci unpack` the image into the bundle `dest`; returns its rootfs."""
        run(["umoci", "unpack", "--image", f"{self.layout}:{self.tag}", dest], timeout=_COMMAND_TIMEOUT)
        return dest / "rootfs"


def _run(
    argv: Sequence[str | os.PathLike[str]], *, env: dict[str, str], timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run argv in its own process group; on timeout kill the whole group.

    subprocess.run's timeout kills the direct child only, which would leave
    buildah's `buildah-oci-runtime` helper behind.
    """
    args = [os.fspath(a) for a in argv]
    proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=_KILL_GRACE)
        except subprocess.TimeoutExpired:  # a process outside the group holds the pipes
            proc.wait(timeout=_KILL_GRACE)
            out, err = "", "(output lost: the pipes stayed open after the kill)"
        raise AssertionError(f"{args} timed out after {timeout} s\nstdout:\n{out}\nstderr:\n{err}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


class Buildah:
    """A private buildah whose storage, configuration and host-state stand-ins
    all live under `workdir`. Cheap to make: two objects for one workdir
    share its storage (and so buildah's layer cache)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.runroot = workdir / "run"
        self.runc_root = workdir / "host/run-runc"
        self._conf = workdir / "conf"
        self._tmp = workdir / "tmp"
        self._binds = {
            workdir / "host/var-lib-containers": "/var/lib/containers",
            workdir / "host/run-containers": "/run/containers",
            self.runc_root: "/run/runc",
        }
        self._exports = workdir / "export"

    # --- running buildah ----------------------------------------------------

    def _prepare(self) -> None:
        for path in (self._conf, self._tmp, self._exports, *self._binds):
            path.mkdir(parents=True, exist_ok=True)
        for target, mode in _HOST_STATE.items():
            # An empty mount point to bind over; buildah would make it anyway.
            if not os.path.isdir(target):
                os.mkdir(target, mode)
        (self._conf / "containers.conf").write_text(_CONTAINERS_CONF)
        (self._conf / "registries.conf").write_text(_REGISTRIES_CONF)
        (self._conf / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.root}"\nrunroot = "{self.runroot}"\n')
        (self._conf / "policy.json").write_text(json.dumps(_POLICY))

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in tool_env().items() if not k.startswith(("BUILDAH_", "CONTAINERS_"))}
        env.pop("XDG_RUNTIME_DIR", None)
        env.update({
            "CONTAINERS_CONF": str(self._conf / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self._conf / "registries.conf"),
            "CONTAINERS_STORAGE_CONF": str(self._conf / "storage.conf"),
            "TMPDIR": str(self._tmp),
            "HTTP_PROXY": _NOWHERE, "HTTPS_PROXY": _NOWHERE, "NO_PROXY": "",
        })
        return env

    def buildah(
        self, *args: str | os.PathLike[str], timeout: float = _COMMAND_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `buildah ARGS` against this storage, isolated as the module says."""
        self._prepare()
        binds = [path for pair in self._binds.items() for path in pair]
        argv = [
            "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _ISOLATE_SCRIPT,
            "buildah-isolated", *binds, "--",
            "buildah", "--root", self.root, "--runroot", self.runroot, "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--short-name-alias-conf", self._conf / "aliases.conf",
            *args,
        ]
        return _run(argv, env=self._env(), timeout=timeout, check=check)

    def build(
        self,
        context: Path,
        *,
        containerfile: Path | None = None,
        build_args: Sequence[str] = (),
        target: str | None = None,
        tag: str = "localhost/buildah-test:latest",
        no_cache: bool = False,
        network: str = "none",
        extra_args: Sequence[str] = (),
        timeout: float = BUILD_TIMEOUT,
    ) -> BuiltImage:
        """`buildah bud --layers --format docker` of `context`, then an OCI export.

        `build_args` are `K=V` (or `K`, taken from the environment) as on the
        command line; `extra_args` go before the context (`--squash`, ...).
        """
        self._prepare()
        iidfile = self._tmp / "iid"
        iidfile.unlink(missing_ok=True)
        argv: list[str | os.PathLike[str]] = [
            "bud", "--layers", "--format", "docker", "--runtime", "runc", "--isolation", "oci",
            "--network", network, "--identity-label=false", "--http-proxy=false",
            "--signature-policy", self._conf / "policy.json", "--tls-verify=false",
            "--iidfile", iidfile, "--tag", tag,
        ]
        if containerfile is not None:
            argv += ["--file", containerfile]
        for arg in build_args:
            argv += ["--build-arg", arg]
        if target is not None:
            argv += ["--target", target]
        if no_cache:
            argv.append("--no-cache")
        argv += [*extra_args, context]
        proc = self.buildah(*argv, timeout=timeout)
        image_id = iidfile.read_text().strip().removeprefix("sha256:")

        inspect = json.loads(self.buildah("inspect", "--type", "image", image_id).stdout)
        layout = self._exports / image_id[:12]
        if not layout.exists():
            self.buildah("push", "--quiet", "--format", "oci", "--signature-policy", self._conf / "policy.json",
                         image_id, f"oci:{layout}:image")
        return BuiltImage(
            image_id=image_id, name=tag, config=json.loads(inspect["Config"]),
            manifest=json.loads(inspect["Manifest"]), layout=layout, tag="image",
            log=proc.stdout + proc.stderr,
        )

    # --- cleanup ------------------------------------------------------------

    def cleanup(self) -> None:
        """Remove every container, image and layer, runc's leftovers, the
        storage itself; then nothing may be mounted under `workdir`.

        Every step runs even when an earlier one fails; the failures are
        raised together at the end.
        """
        errors: list[str] = []

        def attempt(what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except (AssertionError, OSError, subprocess.SubprocessError) as e:
                errors.append(f"{what}: {e}")

        env = tool_env()

        def delete_runc_containers() -> None:
            # RUN containers of a build that was killed (timeout) outlive it:
            # runc makes each its own session. Their state is here, thanks to
            # the bind over /run/runc; `delete -f` kills them and removes
            # their cgroups.
            runc = ["runc", "--root", self.runc_root]
            for cid in _run([*runc, "list", "-q"], env=env, timeout=_COMMAND_TIMEOUT).stdout.split():
                attempt(f"runc delete {cid}", _run, [*runc, "delete", "-f", cid], env=env,
                        timeout=_COMMAND_TIMEOUT)

        if self.runc_root.is_dir():
            attempt("runc list", delete_runc_containers)
        if self.root.is_dir():
            attempt("buildah rm", self.buildah, "rm", "--all")
            attempt("buildah rmi", self.buildah, "rmi", "--all", "--force")
        for point in sorted(mounts_under(self.workdir), key=len, reverse=True):
            if _run(["umount", point], env=env, timeout=_COMMAND_TIMEOUT, check=False).returncode != 0:
                attempt(f"umount {point}", _run, ["umount", "-l", point], env=env, timeout=_COMMAND_TIMEOUT)
        left = mounts_under(self.workdir)
        if left:
            errors.append(f"still mounted under {self.workdir}: {left}")
        else:
            for path in (self.root, self.runroot, self._tmp, *self._binds):
                if path.exists():
                    attempt(f"remove {path}", shutil.rmtree, path)
        if errors:
            raise AssertionError("buildah cleanup failed:\n" + "\n".join(errors))


def buildah_build(
    context: Path,
    *,
    workdir: Path,
    containerfile: Path | None = None,
    build_args: Sequence[str] = (),
    target: str | None = None,
    **options: Any,
) -> BuiltImage:
    """Build `context` with buildah whose state lives under `workdir` (see
    Buildah.build for `options`). Builds with the same workdir share
    buildah's layer cache; `buildah_cleanup(workdir)` removes it all."""
    return Buildah(workdir).build(
        context, containerfile=containerfile, build_args=build_args, target=target, **options)


def buildah_cleanup(workdir: Path) -> None:
    """Remove what buildah_build(..., workdir=workdir) left; see Buildah.cleanup."""
    Buildah(workdir).cleanup()
