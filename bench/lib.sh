# shellcheck shell=bash disable=SC2034  # variables are for the sourcing script
# Shared helpers for the benchmarks in bench/. Source it from a bash script
# that runs with `set -euo pipefail`:
#
#     . "$(dirname "$0")/lib.sh"
#     bench_init                      # traps, clean environment, work dir
#     bench_need docker-registry:docker-registry skopeo:skopeo
#     bench_registry_start            # sets BENCH_REGISTRY_HOST
#     bench_measure results.tsv TOOL RUN -- cmd args...
#     bench_summary results.tsv pybox podman skopeo
#
# Every temporary path lives under BENCH_WORK (one directory per run, under
# BENCH_BASE). The EXIT trap stops the registry, unmounts whatever a tool left
# mounted under BENCH_WORK and removes it; Ctrl-C and TERM end up there too.

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_BASE=${BENCH_BASE:-/var/tmp/pybox-bench}
BENCH_WORK=
BENCH_REGISTRY_PID=
BENCH_REGISTRY_HOST=
BENCH_REGISTRY_DIR=
BENCH_PY=
BENCH_READY_TIMEOUT=${BENCH_READY_TIMEOUT:-20}   # seconds for the registry to answer
BENCH_STOP_TIMEOUT=10                             # seconds before SIGKILL
BENCH_SYNC_TIMEOUT=120                            # seconds for a sync between runs

bench_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# bench_init: traps, environment without proxies or registry overrides, a
# fresh BENCH_WORK, and BENCH_PY (a plain python3 for the small helpers).
bench_init() {
    [ "$(id -u)" = 0 ] || bench_die "run as root (podman and pybox unpack as root)"
    trap bench_cleanup EXIT
    trap 'bench_log "interrupted"; exit 130' INT
    trap 'bench_log "terminated"; exit 143' TERM
    # Loopback only: no proxy may sit between a tool and the registry, and
    # docker-registry reads any REGISTRY_* variable as a config override.
    unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY all_proxy ALL_PROXY
    unset PYBOX_ROOT DOCKER_CONFIG REGISTRY_AUTH_FILE CONTAINERS_CONF \
        CONTAINERS_REGISTRIES_CONF CONTAINERS_STORAGE_CONF
    while read -r var; do unset "$var"; done < <(compgen -e | grep '^REGISTRY_' || true)
    export LC_ALL=C
    if [ -x /usr/bin/python3 ]; then BENCH_PY=/usr/bin/python3; else BENCH_PY=$(command -v python3); fi
    [ -n "$BENCH_PY" ] || bench_die "python3 is missing"
    mkdir -p "$BENCH_BASE"
    bench_reap_stale
    BENCH_WORK=$(mktemp -d "$BENCH_BASE/run.XXXXXX")
    echo $$ > "$BENCH_WORK/owner.pid"
}

# bench_reap_stale: remove run directories whose owner process is gone
# (a run killed with -9 has no trap), unless something is still mounted there.
bench_reap_stale() {
    local dir pid
    for dir in "$BENCH_BASE"/run.*; do
        [ -d "$dir" ] || continue
        pid=$(cat "$dir/owner.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then continue; fi
        bench_log "removing stale $dir"
        bench_rm_tree "$dir" || bench_log "left $dir in place"
    done
}

# bench_need CMD:PACKAGE...: apt-get install the packages whose command is missing.
bench_need() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || [ -x "${spec%%:*}" ] || missing+=("${spec#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    bench_log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -q
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "${missing[@]}"
}

# bench_free_port: a TCP port that was free on 127.0.0.1 a moment ago.
bench_free_port() {
    "$BENCH_PY" -I -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# bench_mounts_under DIR: mount points at or below DIR, deepest first.
bench_mounts_under() {
    "$BENCH_PY" -I - "$1" <<'EOF'
import os, re, sys
root = os.path.realpath(sys.argv[1])
unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
points = []
with open("/proc/self/mountinfo") as f:
    for line in f:
        point = unescape(line.split()[4])
        if point == root or point.startswith(root + "/"):
            points.append(point)
for point in sorted(set(points), key=len, reverse=True):
    print(point)
EOF
}

# bench_umount_under DIR: unmount everything at or below DIR; fails if
# something stays mounted.
bench_umount_under() {
    local point left
    while read -r point; do
        umount "$point" 2>/dev/null || umount -l "$point" 2>/dev/null || true
    done < <(bench_mounts_under "$1")
    left=$(bench_mounts_under "$1")
    [ -z "$left" ] || { bench_log "still mounted under $1: $left"; return 1; }
}

# bench_rm_tree DIR: unmount below DIR, then remove it without crossing
# into another file system.
bench_rm_tree() {
    [ -e "$1" ] || return 0
    bench_umount_under "$1" || return 1
    rm -rf --one-file-system -- "$1"
}

# bench_registry_start: start docker-registry on a free loopback port with its
# storage under BENCH_WORK; sets BENCH_REGISTRY_HOST (127.0.0.1:PORT).
bench_registry_start() {
    local attempt port deadline
    BENCH_REGISTRY_DIR=$BENCH_WORK/registry
    mkdir -p "$BENCH_REGISTRY_DIR/storage"
    for _ in 1 2 3; do
        port=$(bench_free_port)
        # distribution reads YAML; JSON is YAML.
        cat > "$BENCH_REGISTRY_DIR/config.yml" <<EOF
{"version": "0.1",
 "log": {"level": "warn", "formatter": "text"},
 "storage": {"filesystem": {"rootdirectory": "$BENCH_REGISTRY_DIR/storage"},
             "maintenance": {"uploadpurging": {"enabled": false}}},
 "http": {"addr": "127.0.0.1:$port", "secret": "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"}}
EOF
        docker-registry serve "$BENCH_REGISTRY_DIR/config.yml" \
            </dev/null >>"$BENCH_REGISTRY_DIR/registry.log" 2>&1 &
        BENCH_REGISTRY_PID=$!
        deadline=$((SECONDS + BENCH_READY_TIMEOUT))
        while [ $SECONDS -lt $deadline ]; do
            if ! kill -0 "$BENCH_REGISTRY_PID" 2>/dev/null; then
                BENCH_REGISTRY_PID=
                break   # lost the port race, most likely: try another port
            fi
            if curl -fsS --noproxy '*' -m 1 -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
                BENCH_REGISTRY_HOST=127.0.0.1:$port
                bench_log "docker-registry (pid $BENCH_REGISTRY_PID) on $BENCH_REGISTRY_HOST"
                return 0
            fi
            sleep 0.1
        done
        bench_registry_stop
    done
    cat "$BENCH_REGISTRY_DIR/registry.log" >&2 || true
    bench_die "docker-registry did not start"
}

bench_registry_stop() {
    local pid=$BENCH_REGISTRY_PID deadline
    BENCH_REGISTRY_PID=
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + BENCH_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# bench_at_exit CMD...: run CMD (a function, say) first in the EXIT trap, before
# the registry stops and BENCH_WORK goes; its failure is logged, not fatal.
BENCH_AT_EXIT=()
bench_at_exit() { BENCH_AT_EXIT+=("$*"); }

bench_cleanup() {
    local rc=$? hook
    trap - EXIT INT TERM
    for hook in "${BENCH_AT_EXIT[@]}"; do
        eval "$hook" || bench_log "exit hook failed: $hook"
    done
    bench_registry_stop
    if [ -n "$BENCH_WORK" ] && [ -d "$BENCH_WORK" ]; then
        if [ -n "${BENCH_KEEP:-}" ]; then
            bench_log "BENCH_KEEP set: left $BENCH_WORK"
        elif ! bench_rm_tree "$BENCH_WORK"; then
            bench_log "could not clean $BENCH_WORK"
            [ $rc -ne 0 ] || rc=1
        fi
    fi
    exit $rc
}

# "${BENCH_ISOLATE[@]}" SRC:DST... -- CMD...: run CMD in a private mount
# namespace where each directory SRC is bind-mounted on DST. It is a command
# prefix (not a function) so that /usr/bin/time can run it; unshare and sh
# exec, so time still reports CMD's own peak RSS. For tools that write
# host-wide state as root whatever their flags say (c/image's blob-info
# cache in /var/lib/containers/cache, for one). The mounts die with CMD.
# shellcheck disable=SC2016  # expanded by the inner sh
BENCH_ISOLATE=(unshare --mount --propagation private -- /bin/sh -c '
    while [ "$1" != -- ]; do
        mount --bind "${1%%:*}" "${1#*:}" || exit 125
        shift
    done
    shift
    exec "$@"' bench-isolated)

# bench_mountpoint DIR MODE: make sure DIR exists to bind over it. It stays
# (empty) afterwards: removing it could pull the rug from under a concurrent
# run's bind mount, and the tools it stands in for would have made it anyway.
bench_mountpoint() {
    [ -d "$1" ] || mkdir -m "$2" "$1"
}

# bench_sync: flush dirty pages between timed runs, so one tool's writeback
# is not billed to the next (bounded: the machine is shared).
bench_sync() { timeout "$BENCH_SYNC_TIMEOUT" sync || bench_log "sync timed out"; }

# bench_measure RESULTS TOOL RUN -- CMD...: run CMD once, append
# "TOOL RUN WALL_SECONDS MAXRSS_KB EXIT" to RESULTS. Output goes to
# BENCH_WORK/logs/TOOL.RUN.{out,err}; a failure is reported with its stderr
# and recorded, and does not stop the benchmark. Returns CMD's exit status.
bench_measure() {
    local results=$1 tool=$2 run=$3 t0 t1 rc rss
    shift 4
    local logs=$BENCH_WORK/logs
    mkdir -p "$logs"
    t0=$(date +%s%N)
    rc=0
    /usr/bin/time -f '%M' -o "$logs/$tool.$run.time" "$@" \
        >"$logs/$tool.$run.out" 2>"$logs/$tool.$run.err" </dev/null || rc=$?
    t1=$(date +%s%N)
    rss=$(tail -n 1 "$logs/$tool.$run.time" 2>/dev/null || echo 0)
    case $rss in ''|*[!0-9]*) rss=0 ;; esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$run" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" "$rss" "$rc" >> "$results"
    if [ $rc -ne 0 ]; then
        bench_log "$tool run $run FAILED (exit $rc): $*"
        sed 's/^/    /' "$logs/$tool.$run.err" >&2
    fi
    return $rc
}

# bench_summary RESULTS TOOL... [-- NUMERATOR/DENOMINATOR...]: an aligned
# table of the successful runs per tool (median, min, max wall seconds;
# median and max peak RSS) and the ratios of medians asked for. Seconds have
# BENCH_DIGITS decimals (default 2; 3 for runs of a few ms).
bench_summary() {
    BENCH_DIGITS=${BENCH_DIGITS:-2} "$BENCH_PY" -I - "$@" <<'EOF'
import os, statistics, sys
digits = int(os.environ["BENCH_DIGITS"])
args = sys.argv[1:]
path, rest = args[0], args[1:]
tools, ratios = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
rows = {t: [] for t in tools}
failed = {t: 0 for t in tools}
for line in open(path):
    tool, run, wall, rss, rc = line.split()
    if tool not in rows:
        continue
    if rc == "0":
        rows[tool].append((float(wall), int(rss)))
    else:
        failed[tool] += 1
table = [("tool", "ok/runs", "median s", "min s", "max s", "RSS med MB", "RSS max MB")]
median = {}
for t in tools:
    r = rows[t]
    if r:
        walls = [w for w, _ in r]; rss = [m / 1024 for _, m in r]
        median[t] = statistics.median(walls)
        table.append((t, f"{len(r)}/{len(r) + failed[t]}", f"{median[t]:.{digits}f}",
                      f"{min(walls):.{digits}f}", f"{max(walls):.{digits}f}",
                      f"{statistics.median(rss):.0f}", f"{max(rss):.0f}"))
    else:
        table.append((t, f"0/{failed[t]}", "failed", "-", "-", "-", "-"))
widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
for row in table:
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
if ratios:
    print()
walls = {}
for line in open(path):
    tool, run, wall, rss, rc = line.split()
    if rc == "0":
        walls[tool, run] = float(wall)
for spec in ratios:
    a, b = spec.split("/")
    if a not in median or b not in median:
        print(f"{a}/{b}: n/a (a tool failed every run)")
        continue
    # Runs of one round share the machine's mood: their ratios are steadier.
    paired = [walls[a, r] / walls[b, r] for (t, r) in walls if t == a and (b, r) in walls]
    print(f"{a}/{b}: {median[a] / median[b]:.2f}x (ratio of medians);"
          f" per-round ratios median {statistics.median(paired):.2f}x,"
          f" range {min(paired):.2f}-{max(paired):.2f}x")
EOF
}

# bench_isolated DIR: sets BENCH_ISOLATED to the BENCH_ISOLATE prefix with
# DIR/varlib over /var/lib/containers and DIR/runc over /run/containers
# (made if missing; call bench_mountpoint for the two targets first). Reusing
# one DIR across commands keeps their state, as the host paths would.
bench_isolated() {
    mkdir -p "$1/varlib" "$1/runc"
    BENCH_ISOLATED=("${BENCH_ISOLATE[@]}" "$1/varlib:/var/lib/containers" "$1/runc:/run/containers" --)
}

# bench_busybox_image LAYOUT TAG: a one-layer image made by umoci into a new
# OCI layout: Debian's static /usr/bin/busybox as /bin/busybox with a few
# applet symlinks (sh, true, ...), /etc/passwd and /etc/group (root,
# nobody), /root, /tmp; PATH set and Cmd `sh` in the config. Everything gets
# a fixed mtime: same busybox, same layer digest. Needs umoci and busybox.
bench_busybox_image() {
    local layout=$1 tag=$2 bundle=$1.bundle applet
    [ -x /usr/bin/busybox ] || bench_die "/usr/bin/busybox is missing (apt-get install busybox-static)"
    rm -rf "$layout" "$bundle"
    umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
    local rootfs=$bundle/rootfs
    mkdir -m 755 "$rootfs/bin" "$rootfs/etc"
    mkdir -m 700 "$rootfs/root"
    mkdir -m 1777 "$rootfs/tmp"
    cp /usr/bin/busybox "$rootfs/bin/busybox"
    chmod 755 "$rootfs/bin/busybox"
    for applet in sh cat echo env false id ls sleep true; do
        ln -s busybox "$rootfs/bin/$applet"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
        > "$rootfs/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' > "$rootfs/etc/group"
    chmod 644 "$rootfs/etc/passwd" "$rootfs/etc/group"
    find "$rootfs" -exec touch -h -d @1704067200 {} +
    umoci repack --history.created_by "bench: busybox" --image "$layout:$tag" "$bundle"
    umoci config --image "$layout:$tag" \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.cmd sh
    umoci gc --layout "$layout"
    rm -rf "$bundle"
}

# bench_podman_config DIR: podman and skopeo read only the files written here
# (never /etc's registries or storage settings); the registry on loopback is
# marked insecure (plain HTTP) and podman's default store is under DIR.
bench_podman_config() {
    local dir=$1
    cat > "$dir/registries.conf" <<EOF
unqualified-search-registries = []
[[registry]]
location = "$BENCH_REGISTRY_HOST"
insecure = true
EOF
    cat > "$dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$dir/podman-default/root"
runroot = "$dir/podman-default/run"
EOF
    export CONTAINERS_CONF=$BENCH_LIB_DIR/containers.conf
    export CONTAINERS_REGISTRIES_CONF=$dir/registries.conf
    export CONTAINERS_STORAGE_CONF=$dir/storage.conf
}

# This environment sets PYTHONDONTWRITEBYTECODE=1: a pybox started with it
# cannot cache what it compiles. A normal install has bytecode caches, so
# pybox (and the reference Python) run without it, after one compileall.
NOPYC=(env -u PYTHONDONTWRITEBYTECODE)

# bench_compile REPO VENV_PY: byte-compile pybox's sources and the venv's
# packages once, untimed.
bench_compile() {
    local repo=$1 py=$2 dir site
    local src=()
    bench_log "compiling bytecode (untimed)"
    for dir in pybox registry runtime builder; do
        if [ -d "$repo/$dir" ]; then src+=("$repo/$dir"); fi
    done
    site=$("${NOPYC[@]}" "$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "${NOPYC[@]}" "$py" -m compileall -q "${src[@]}" "$site" >/dev/null ||
        bench_log "compileall reported errors (a file being edited?); its modules compile at each start"
}

# bench_pybox_cgroups: pybox's cgroups, <hierarchy>/pybox/<id> (v1 and
# hybrid: one per controller mount; v2: /sys/fs/cgroup/pybox/<id>), sorted.
bench_pybox_cgroups() {
    find /sys/fs/cgroup/*/pybox /sys/fs/cgroup/pybox -mindepth 1 -maxdepth 1 -type d 2>/dev/null \
        | sort || true
}

# bench_check_pybox_leftovers BEFORE: die if anything is mounted under
# BENCH_WORK, or a pybox cgroup dir not listed in the file BEFORE (taken with
# bench_pybox_cgroups at the start) is still there. Another session's
# container may be ending right now: it gets a few seconds.
bench_check_pybox_leftovers() {
    local before=$1 left leaked=
    left=$(bench_mounts_under "$BENCH_WORK")
    [ -z "$left" ] || bench_die "mounts left behind under $BENCH_WORK: $left"
    for _ in $(seq 50); do
        leaked=$(comm -13 "$before" <(bench_pybox_cgroups))
        [ -n "$leaked" ] || break
        sleep 0.1
    done
    [ -z "$leaked" ] || bench_die "cgroup dirs left under /sys/fs/cgroup/*/pybox/: $leaked"
}
