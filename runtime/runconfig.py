"""From an image and what the user typed to a :class:`ContainerSpec`, by Docker's rules.

Everything that can be wrong with the input is found here, before anything
is created: a bad user, volume, memory value or capability is one clear
error and leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import resource
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from pybox.errors import UsageError
from pybox.image import DEFAULT_PATH
from pybox.runtime.capabilities import resolve, security_for
from pybox.runtime.linux import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY
from pybox.runtime.spec import (
    BindMount,
    DeviceNode,
    Limits,
    NetworkMode,
    ProcessSpec,
    Rlimit,
    Security,
    TmpfsMount,
    UserSpec,
)
from pybox.runtime.users import resolve_user

__all__ = [
    "RunOptions",
    "ProcessPlan",
    "DEFAULT_PATH",
    "parse_bytes",
    "parse_volume",
    "VolumeMount",
    "parse_mount",
    "plan_process",
    "plan_limits",
    "init_mounts",
    "TINI",
    "INIT_PATH",
    "plan_security",
    "hosts_file",
    "resolv_conf",
    "SecurityOptions",
    "parse_security_opts",
    "parse_tmpfs",
    "parse_ulimit",
    "parse_sysctl",
    "parse_device",
    "parse_labels",
]

# Debian's statically linked tini: Docker's docker-init is tini too.
TINI = "/usr/bin/tini-static"
INIT_PATH = "/sbin/docker-init"



@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """``pybox run``'s flags, as typed (strings are parsed here, not in the CLI)."""

    command: tuple[str, ...] = ()
    entrypoint: str | None = None  # --entrypoint; "" resets the image's
    env: tuple[str, ...] = ()  # -e K=V or -e K
    env_files: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    group_add: tuple[str, ...] = ()
    hostname: str | None = None
    name: str | None = None
    remove: bool = False
    interactive: bool = False
    tty: bool = False
    volumes: tuple[str, ...] = ()  # -v HOST:CTR[:ro]
    mounts: tuple[str, ...] = ()  # --mount type=bind,...
    memory: str | None = None
    memory_swap: str | None = None
    cpus: str | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    network: str = "none"
    init: bool = False  # --init: tini as PID 1
    read_only: bool = False
    security_opt: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()  # --tmpfs PATH[:opts]
    shm_size: str | None = None
    ulimits: tuple[str, ...] = ()  # --ulimit name=soft[:hard]
    sysctls: tuple[str, ...] = ()  # --sysctl key=value
    devices: tuple[str, ...] = ()  # --device HOST[:CTR[:perms]]
    stop_signal: str | None = None
    labels: tuple[str, ...] = ()
    pull: str = "missing"
    platform: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_bytes(text: str, flag: str) -> int:
    """Docker's RAMInBytes: ``512m``, ``1g``, ``1.5G``, ``4096`` (binary units, optional ``b``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise UsageError(f"invalid value {text!r} for {flag}: expected a size such as 512m or 1g")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _parse_env_line(item: str, where: str) -> tuple[str, str | None]:
    key, sep, value = item.partition("=")
    if not key or any(c.isspace() for c in key):
        raise UsageError(f"invalid environment variable {item!r} ({where})")
    return key, (value if sep else None)


def _env_files(paths: tuple[str, ...]) -> list[str]:
    items = []
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise UsageError(f"cannot read --env-file {path}: {e.strerror}") from e
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                _parse_env_line(line, f"{path}:{number}")
                items.append(line)
    return items


def _merge_env(image_env: list[str], options: RunOptions, home: str, hostname: str) -> tuple[str, ...]:
    env: dict[str, str] = {}
    for item in image_env:
        k, _, v = item.partition("=")
        env[k] = v
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = hostname
    if options.tty:
        env.setdefault("TERM", "xterm")
    for item in [*_env_files(options.env_files), *options.env]:
        key, value = _parse_env_line(item, "-e")
        if value is None:
            # -e K: the host's value, or nothing when the host has none (Docker).
            if key in os.environ:
                env[key] = os.environ[key]
            else:
                env.pop(key, None)
        else:
            env[key] = value
    env.update(options.extra_env)
    env.setdefault("HOME", home)
    return tuple(f"{k}={v}" for k, v in env.items())


@dataclass(frozen=True, kw_only=True)
class ProcessPlan:
    process: ProcessSpec
    hostname: str


def _command(config: dict, options: RunOptions) -> tuple[str, ...]:
    """Docker's rule: --entrypoint replaces the image's and clears its Cmd; trailing args replace Cmd."""
    if options.entrypoint is not None:
        entrypoint = [options.entrypoint] if options.entrypoint else []
        cmd = list(options.command)
    else:
        entrypoint = list(config.get("Entrypoint") or [])
        cmd = list(options.command) or list(config.get("Cmd") or [])
    args = tuple(entrypoint + cmd)
    if not args:
        raise UsageError("no command specified: the image has no Entrypoint or Cmd, and none was given")
    return args


def plan_process(config: dict, options: RunOptions, read_file, default_hostname: str) -> ProcessPlan:
    """``config`` is the image config's ``config`` object; ``read_file(path)`` reads the image's files."""
    hostname = options.hostname or default_hostname
    user = resolve_user(options.user if options.user is not None else config.get("User") or "",
                        options.group_add, lambda p: _text(read_file(p)))
    cwd = options.workdir or config.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise UsageError(f"the working directory {cwd!r} must be an absolute path")
    args = _command(config, options)
    if options.init:
        # tini reaps orphans and passes signals on, which a plain command as PID 1 does not.
        args = (INIT_PATH, "--", *args)
    process = ProcessSpec(
        args=args,
        env=_merge_env(list(config.get("Env") or []), options, user.home, hostname),
        cwd=cwd,
        user=UserSpec(uid=user.uid, gid=user.gid, additional_gids=user.additional_gids),
        terminal=options.tty,
        stdin_open=options.interactive,
    )
    return ProcessPlan(process=process, hostname=hostname)


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def init_mounts(options: RunOptions) -> tuple[BindMount, ...]:
    if not options.init:
        return ()
    if not os.path.exists(TINI):
        raise UsageError(f"--init needs {TINI}: install Debian's tini package")
    return (BindMount(source=TINI, target=INIT_PATH, readonly=True),)


def plan_limits(options: RunOptions) -> Limits:
    memory = parse_bytes(options.memory, "--memory") if options.memory else None
    swap: int | None = None
    if options.memory_swap is not None:
        if memory is None:
            raise UsageError("--memory-swap needs --memory as well")
        swap = -1 if options.memory_swap.strip() == "-1" else parse_bytes(options.memory_swap, "--memory-swap")
        if swap != -1 and swap < memory:
            raise UsageError("--memory-swap must be at least --memory (it counts memory plus swap)")
    elif memory is not None:
        # Docker: with --memory alone, as much swap again as memory.
        swap = 2 * memory
    if memory is not None and memory < 6 * 1024 * 1024:
        raise UsageError("--memory must be at least 6m")
    cpus = None
    if options.cpus is not None:
        try:
            cpus = float(options.cpus)
        except ValueError:
            raise UsageError(f"invalid value {options.cpus!r} for --cpus: expected a number such as 1.5") from None
        if cpus <= 0 or cpus > (os.cpu_count() or 1):
            raise UsageError(f"--cpus {options.cpus}: must be above 0 and at most {os.cpu_count()} on this machine")
    if options.pids_limit is not None and options.pids_limit == 0:
        raise UsageError("--pids-limit must be positive, or -1 for unlimited")
    return Limits(
        memory=memory,
        memory_swap=swap,
        cpus=cpus,
        cpu_shares=options.cpu_shares,
        cpuset_cpus=options.cpuset_cpus,
        pids=None if options.pids_limit in (None, -1) else options.pids_limit,
    )


def plan_security(options: RunOptions, uid: int) -> Security:
    caps = resolve(list(options.cap_add), list(options.cap_drop), privileged=options.privileged)
    opts = parse_security_opts(options.security_opt)
    security = security_for(uid=uid, caps=caps, privileged=options.privileged,
                            no_new_privileges=opts.no_new_privileges)
    return replace(security, mask_paths=not opts.systempaths_unconfined,
                   seccomp=_seccomp_filter(opts.seccomp, caps, privileged=options.privileged),
                   seccomp_profile=_seccomp_source(opts.seccomp, privileged=options.privileged))


def _seccomp_source(choice: str | None, *, privileged: bool) -> str:
    if choice == "unconfined" or (privileged and choice is None):
        return "unconfined"
    return choice or "default"


def _seccomp_filter(choice: str | None, caps: frozenset[str], *, privileged: bool) -> object:
    """Docker's rules: the default profile unless unconfined or --privileged; a file in Docker's JSON format."""
    if choice == "unconfined" or (privileged and choice is None):
        return None
    from pybox.runtime import seccomp

    profile = seccomp.default_profile() if choice is None else seccomp.read_docker_profile(Path(choice))
    return seccomp.build(profile, caps=caps, native_arch=seccomp.host_arch(), kernel=seccomp.host_kernel())


@dataclass(frozen=True, kw_only=True)
class VolumeMount:
    """A named (or, with name None, anonymous) volume at ``target``."""

    name: str | None
    target: str
    readonly: bool = False
    nocopy: bool = False


def parse_volume(text: str) -> BindMount | VolumeMount:
    """``-v HOST:CTR[:ro]`` binds a host path; ``-v NAME:CTR`` mounts a named volume; ``-v CTR`` an anonymous one."""
    parts = text.split(":")
    if len(parts) == 1 and parts[0].startswith("/"):
        return VolumeMount(name=None, target=os.path.normpath(parts[0]))
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {text!r}: expected HOST:CONTAINER[:ro] or NAME:CONTAINER[:ro]")
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    if set(options) - {"ro", "rw", "nocopy"} or {"ro", "rw"} <= set(options):
        raise UsageError(f"invalid volume {text!r}: options are ro, rw and nocopy")
    if not target.startswith("/"):
        raise UsageError(f"invalid volume {text!r}: the container path must be absolute")
    readonly = "ro" in options
    if not source.startswith("/"):
        return VolumeMount(name=source, target=os.path.normpath(target), readonly=readonly, nocopy="nocopy" in options)
    return BindMount(source=os.path.normpath(source), target=os.path.normpath(target), readonly=readonly)


def _csv(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        fields[key.lower()] = value if sep else "true"
    return fields


def _flag(fields: dict[str, str], text: str, *keys: str) -> bool:
    value = False
    for key in keys:
        if key in fields:
            raw = fields.pop(key)
            if raw not in ("true", "1", "false", "0"):
                raise UsageError(f"invalid --mount {text!r}: {key} takes true or false")
            value = raw in ("true", "1")
    return value


def parse_mount(text: str) -> BindMount | VolumeMount | TmpfsMount:
    """Docker's ``--mount`` CSV: ``type=bind|volume|tmpfs``, ``source``, ``target``, ``readonly`` and
    the type's own options (``bind-propagation``, ``volume-nocopy``, ``tmpfs-size``, ``tmpfs-mode``)."""
    fields = _csv(text)
    kind = fields.pop("type", "volume")
    source = fields.pop("source", None) or fields.pop("src", None)
    target = fields.pop("target", None) or fields.pop("destination", None) or fields.pop("dst", None)
    readonly = _flag(fields, text, "readonly", "ro")
    if not target or not target.startswith("/"):
        raise UsageError(f"invalid --mount {text!r}: target must be an absolute path")
    target = os.path.normpath(target)
    if kind == "bind":
        propagation = fields.pop("bind-propagation", "rprivate")
        mount: BindMount | VolumeMount | TmpfsMount
        if not source or not source.startswith("/"):
            raise UsageError(f"invalid --mount {text!r}: a bind source must be an absolute path")
        if not os.path.exists(source):
            raise UsageError(f"invalid --mount {text!r}: bind source path does not exist: {source}")
        mount = BindMount(source=os.path.normpath(source), target=target, readonly=readonly, propagation=propagation)
    elif kind == "volume":
        nocopy = _flag(fields, text, "volume-nocopy")
        mount = VolumeMount(name=source, target=target, readonly=readonly, nocopy=nocopy)
    elif kind == "tmpfs":
        if source:
            raise UsageError(f"invalid --mount {text!r}: a tmpfs has no source")
        options = []
        if "tmpfs-size" in fields:
            options.append(f"size={parse_bytes(fields.pop('tmpfs-size'), '--mount tmpfs-size')}")
        if "tmpfs-mode" in fields:
            mode = fields.pop("tmpfs-mode")
            if not re.fullmatch(r"[0-7]{3,4}", mode):
                raise UsageError(f"invalid --mount {text!r}: tmpfs-mode is octal, e.g. 1777")
            options.append(f"mode={mode}")
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0)
        mount = TmpfsMount(target=target, options=",".join(options), flags=flags)
    else:
        raise UsageError(f"invalid --mount {text!r}: type must be bind, volume or tmpfs")
    if fields:
        raise UsageError(f"invalid --mount {text!r}: unknown option(s) {', '.join(sorted(fields))}")
    return mount


def hosts_file(hostname: str, network: NetworkMode) -> str:
    if network == "host":
        try:
            return Path("/etc/hosts").read_text()
        except OSError:
            pass
    return (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        f"127.0.1.1\t{hostname}\n"
    )


_FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")


def resolv_conf(host_text: str, network: NetworkMode) -> str:
    """The host's resolv.conf; off the host network, loopback resolvers cannot answer and are dropped
    (libnetwork's resolvconf.FilterResolvDNS), with public fallbacks only if none remain."""
    if network == "host":
        return host_text
    lines = []
    servers = 0
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            address = words[1]
            if address.startswith("127.") or address == "::1":
                continue
            servers += 1
        lines.append(line)
    if not servers:
        lines += [f"nameserver {s}" for s in _FALLBACK_DNS]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class SecurityOptions:
    no_new_privileges: bool = False
    seccomp: str | None = None  # None: the default profile; "unconfined"; or a profile file
    systempaths_unconfined: bool = False


def parse_security_opts(items: tuple[str, ...]) -> SecurityOptions:
    """Docker's ``--security-opt``: ``no-new-privileges[=true|false]``, ``seccomp=unconfined|FILE``,
    ``systempaths=unconfined``."""
    nnp, seccomp, systempaths = False, None, False
    for item in items:
        key, sep, value = item.partition("=") if "=" in item else item.partition(":")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise UsageError(f"invalid --security-opt {item!r}: no-new-privileges takes true or false")
            nnp = value != "false"
        elif key == "seccomp" and value:
            seccomp = value
        elif key == "systempaths" and value == "unconfined":
            systempaths = True
        else:
            raise UsageError(f"invalid --security-opt {item!r}: expected no-new-privileges, seccomp=unconfined|PROFILE.json "
                             "or systempaths=unconfined")
    return SecurityOptions(no_new_privileges=nnp, seccomp=seccomp, systempaths_unconfined=systempaths)


_TMPFS_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
_TMPFS_CLEAR = {"rw": MS_RDONLY, "suid": MS_NOSUID, "dev": MS_NODEV, "exec": MS_NOEXEC}


def parse_tmpfs(text: str) -> TmpfsMount:
    """``--tmpfs /run:size=64m,mode=1777,exec``; Docker's defaults are noexec, nosuid, nodev."""
    target, _, opts = text.partition(":")
    if not target.startswith("/"):
        raise UsageError(f"invalid --tmpfs {text!r}: the path must be absolute")
    flags = MS_NOEXEC | MS_NOSUID | MS_NODEV
    data = []
    for opt in filter(None, opts.split(",")):
        key, sep, value = opt.partition("=")
        if opt in _TMPFS_FLAGS:
            flags |= _TMPFS_FLAGS[opt]
        elif opt in _TMPFS_CLEAR:
            flags &= ~_TMPFS_CLEAR[opt]
        elif key in ("size", "nr_inodes", "nr_blocks") and value:
            data.append(f"{key}={parse_bytes(value, '--tmpfs size') if key == 'size' else value}")
        elif key in ("mode", "uid", "gid") and value.isdigit():
            data.append(opt)
        else:
            raise UsageError(f"invalid --tmpfs {text!r}: unknown option {opt!r}")
    return TmpfsMount(target=os.path.normpath(target), options=",".join(data), flags=flags)


# Linux's numbering (asm-generic/resource.h); Python's resource module lacks some names.
_RLIMITS = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
    "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14,
    "rttime": 15,
}


def parse_ulimit(text: str) -> Rlimit:
    """``--ulimit nofile=1024[:2048]`` (-1 is unlimited). Not above this host's hard limit:
    raising it needs CAP_SYS_RESOURCE, which pybox may not have (DESIGN section 4)."""
    name, _, values = text.partition("=")
    if name not in _RLIMITS or not values:
        raise UsageError(f"invalid --ulimit {text!r}: expected NAME=SOFT[:HARD] with NAME one of "
                         f"{', '.join(sorted(_RLIMITS))}")
    soft_text, _, hard_text = values.partition(":")
    try:
        soft = resource.RLIM_INFINITY if soft_text == "-1" else int(soft_text)
        hard = soft if not hard_text else resource.RLIM_INFINITY if hard_text == "-1" else int(hard_text)
    except ValueError:
        raise UsageError(f"invalid --ulimit {text!r}: limits are whole numbers or -1") from None
    if soft != resource.RLIM_INFINITY and (hard != resource.RLIM_INFINITY and soft > hard):
        raise UsageError(f"invalid --ulimit {text!r}: the soft limit is above the hard limit")
    host_hard = resource.getrlimit(_RLIMITS[name])[1]
    if host_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > host_hard):
        raise UsageError(f"--ulimit {text}: above this host's hard limit {host_hard}, which pybox cannot raise")
    return Rlimit(resource=_RLIMITS[name], soft=soft, hard=hard)


# Namespaced sysctls (moby opts/opts.go ValidateSysctl): IPC ones, and net.* in the container's own netns.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
                "kernel.shmmni", "kernel.shm_rmid_forced")


def parse_sysctl(text: str, network: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"invalid --sysctl {text!r}: expected KEY=VALUE")
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return key, value
    if key.startswith("net."):
        if network == "host":
            raise UsageError(f"--sysctl {key} cannot be set with --network host: it would change the host")
        return key, value
    raise UsageError(f"--sysctl {key} is not namespaced: it would change the host (only IPC and net.* are allowed)")


def parse_labels(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--label KEY=VALUE`` (a missing ``=`` gives an empty value, as Docker)."""
    labels = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def parse_device(text: str) -> DeviceNode:
    """``--device /dev/fuse[:/dev/fuse[:rwm]]``: the host node's type and numbers, made again inside."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not parts[0].startswith("/"):
        raise UsageError(f"invalid --device {text!r}: expected HOST[:CONTAINER[:PERMISSIONS]]")
    host = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    access = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    if not access or set(access) - set("rwm"):
        raise UsageError(f"invalid --device {text!r}: permissions are made of r, w and m")
    try:
        st = os.stat(host)
    except OSError as e:
        raise UsageError(f"--device {host}: {e.strerror}") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise UsageError(f"--device {host}: not a device node")
    return DeviceNode(path=target, type=kind, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                      mode=stat.S_IMODE(st.st_mode), access=access)
