"""``pybox run``: an image, run as a container to its end, and everything cleaned up after."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

from pybox.errors import UsageError
from pybox.runtime.cgroups import open_cgroup
from pybox.runtime.cgroups.devices import DEFAULT_DEVICES, PRIVILEGED_DEVICES, DevicePolicy, DeviceRule
from pybox.runtime.containers import ContainerState, create_record, new_id, now
from pybox.runtime.linux import Linux
from pybox.runtime.mounts import overlay_options
from pybox.runtime.process import run_container
from pybox.runtime.runconfig import (
    RunOptions,
    VolumeMount,
    hosts_file,
    init_mounts,
    parse_bytes,
    parse_device,
    parse_labels,
    parse_sysctl,
    parse_tmpfs,
    parse_ulimit,
    parse_mount,
    parse_volume,
    plan_limits,
    plan_process,
    plan_security,
    resolv_conf,
)
from pybox.runtime.spec import DEFAULT_SHM_SIZE, BindMount, ContainerSpec, DeviceNode, Security, TmpfsMount
from pybox.runtime.volumes import VolumeStore
from pybox.store import Store
from pybox.store.images import Image
from pybox.store.mounts import rootfs_mount

__all__ = ["Rootfs", "RunResult", "run_image", "run_rootfs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    container_id: str
    exit_code: int
    oom_killed: bool


def _network(text: str) -> str:
    if text in ("none", "host"):
        return text
    if text in ("bridge", "default"):
        raise UsageError("--network bridge is not available yet: use --network none or --network host")
    raise UsageError(f"invalid --network {text!r}: expected none or host")


def _without_mknod(security: Security) -> Security:
    """cgroup v2 enforces device rules only through a BPF program pybox does not load yet;
    without CAP_MKNOD no device node can be made, which keeps the host's disks out of reach."""
    drop = {"CAP_MKNOD"}
    return replace(security, bounding=security.bounding - drop, effective=security.effective - drop,
                   permitted=security.permitted - drop)


# A NamedTuple, not a dataclass: defined at `pybox run`'s start-up, where a dataclass costs five times more.
class Rootfs(NamedTuple):
    """What a container runs on: an image in the store, or a build's layers so far."""

    image_id: str
    image_name: str
    config: dict  # the image config's "config" object: Env, User, Cmd, Volumes, ...
    diff_ids: tuple[str, ...]


def run_image(store: Store, image: Image, options: RunOptions, *, linux: Linux | None = None) -> RunResult:
    rootfs = Rootfs(image_id=image.id, image_name=(image.names or [image.id])[0], config=image.config.config,
                    diff_ids=tuple(image.config.diff_ids))
    return run_rootfs(store, rootfs, options, linux=linux)


def run_rootfs(store: Store, source: Rootfs, options: RunOptions, *, linux: Linux | None = None,
               keep_upper: Path | None = None, output: int | None = None, stop_on_interrupt: bool = False
               ) -> RunResult:
    """Run a container on ``source`` to its end.

    ``keep_upper``: where the container's upper dir (what it changed) is
    moved when it ends, before the record goes (a build's RUN step packs it).
    ``output``: a file descriptor for the container's stdout and stderr.
    ``stop_on_interrupt``: Ctrl-C kills the container rather than reaching it.
    """
    container_id = new_id()
    network = _network(options.network)
    diff_ids = list(source.diff_ids)
    plan = plan_process(source.config, options, lambda p: store.layers.read_file(diff_ids, p), container_id[:12])
    limits = plan_limits(options)
    security = plan_security(options, plan.process.user.uid)
    requested = [parse_volume(v) for v in options.volumes] + [parse_mount(m) for m in options.mounts]
    binds = tuple(m for m in requested if isinstance(m, BindMount)) + init_mounts(options)
    tmpfs = tuple(parse_tmpfs(t) for t in options.tmpfs) + tuple(m for m in requested if isinstance(m, TmpfsMount))
    volume_mounts = [m for m in requested if isinstance(m, VolumeMount)]
    taken = {m.target for m in requested} | {t.target for t in tmpfs}
    # The image's VOLUMEs that nothing else covers get anonymous volumes (Docker).
    volume_mounts += [VolumeMount(name=None, target=os.path.normpath(path))
                      for path in (source.config.get("Volumes") or {}) if os.path.normpath(path) not in taken]
    rlimits = tuple(parse_ulimit(u) for u in options.ulimits)
    sysctls = tuple(parse_sysctl(x, network) for x in options.sysctls)
    devices = tuple(parse_device(d) for d in options.devices)
    shm_size = parse_bytes(options.shm_size, "--shm-size") if options.shm_size else DEFAULT_SHM_SIZE
    labels = parse_labels(options.labels)

    config = {"Image": source.image_id, "ImageName": source.image_name, "Args": list(plan.process.args),
              "Layers": diff_ids, "Labels": {**(source.config.get("Labels") or {}), **labels},
              "StopSignal": options.stop_signal or source.config.get("StopSignal") or "SIGTERM"}
    volumes = VolumeStore(store)
    created_volumes: list[str] = []
    with store.lock():
        record = create_record(store, container_id, options.name, config)
        cgroup = None
        exit_code, oom = 125, False
        try:
            for bind in binds:
                # -v creates a missing host directory, as Docker does.
                if not os.path.lexists(bind.source):
                    os.makedirs(bind.source)
            volume_binds = _volume_binds(volumes, volume_mounts, created_volumes)
            etc = {
                "/etc/hostname": str(record.write_file("hostname", plan.hostname + "\n")),
                "/etc/hosts": str(record.write_file("hosts", hosts_file(plan.hostname, network))),
                "/etc/resolv.conf": str(record.write_file("resolv.conf", resolv_conf(_host_resolv(), network))),
            }
            rootfs = rootfs_mount(store.layers, diff_ids, record.merged,
                                  upper=record.upper, work=record.work)
            rootfs = overlay_options(rootfs)
            cgroup = open_cgroup(f"pybox/{container_id}")
            cgroup.create(limits, devices=_device_policy(options.privileged, devices))
            if not cgroup.device_rules_enforced and not options.privileged:
                security = _without_mknod(security)
            recorded = record.read_config()
            spec = ContainerSpec(id=container_id, name=recorded["Name"], rootfs=rootfs,
                                 process=plan.process, security=security, hostname=plan.hostname,
                                 limits=limits, mounts=binds + tuple(b[1] for b in volume_binds),
                                 network=network, etc_files=etc,
                                 shm_size=shm_size, readonly_rootfs=options.read_only, tmpfs=tmpfs,
                                 rlimits=rlimits, sysctls=sysctls, devices=devices)
            record.write_config({**recorded, "Volumes": [b[0] for b in volume_binds], "Spec": _spec_document(spec)})
            state = ContainerState()

            def started(pid: int) -> None:
                state.status, state.pid, state.started = "running", pid, now()
                record.write_state(state)

            result = run_container(spec, record.merged, join_cgroup=cgroup.add_process, on_started=started,
                                   linux=linux, seccomp_cache=store.root / "cache" / "seccomp", output=output,
                                   stop_on_interrupt=stop_on_interrupt)
            exit_code = result.code
            oom = cgroup.oom_killed()
            state.status, state.exit_code, state.oom_killed, state.finished = "exited", exit_code, oom, now()
            record.write_state(state)
        finally:
            if cgroup is not None:
                cgroup.kill_all(signal.SIGKILL)
                cgroup.destroy()
            if keep_upper is not None and record.upper.is_dir():
                os.rename(record.upper, keep_upper)
            if options.remove:
                record.remove()
                # --rm takes the container's anonymous volumes with it, as Docker's does.
                for name in created_volumes:
                    if volumes.get(name).anonymous:
                        volumes.remove(name)
    return RunResult(container_id=container_id, exit_code=exit_code, oom_killed=oom)


def _host_resolv() -> str:
    try:
        return Path("/etc/resolv.conf").read_text()
    except OSError:
        return ""


def _spec_document(spec: ContainerSpec) -> dict:
    """The spec as JSON for the container record (capability sets sorted).

    The seccomp filter is recorded by its source, not its hundreds of rules.
    """
    def plain(value: object) -> object:
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    recorded = replace(spec, security=replace(spec.security, seccomp=None))
    doc = plain(asdict(recorded))
    assert isinstance(doc, dict)
    del doc["security"]["seccomp"]
    return doc


def _device_policy(privileged: bool, devices: tuple[DeviceNode, ...]) -> DevicePolicy:
    if privileged:
        return PRIVILEGED_DEVICES
    extra = tuple(DeviceRule(type=d.type, major=d.major, minor=d.minor, access=d.access) for d in devices)
    return DevicePolicy(allow_all=False, rules=DEFAULT_DEVICES.rules + extra)


def _volume_binds(volumes: VolumeStore, mounts: list[VolumeMount],
                  created: list[str]) -> list[tuple[str, BindMount]]:
    """(volume name, bind of its data dir) for each volume mount, creating volumes as needed."""
    out = []
    for mount in mounts:
        volume, new = volumes.create(mount.name)
        if new:
            created.append(volume.name)
        data = volumes.data(volume.name)
        fresh = not os.listdir(data)
        out.append((volume.name, BindMount(source=str(data), target=mount.target, readonly=mount.readonly,
                                           copy_up=fresh and not mount.nocopy)))
    return out
