#!/usr/bin/env bash
# Container start-to-exit of `true` in a small busybox image: `pybox run`
# against `podman run` (runc) and `runc run` on a prepared bundle, alternated
# round-robin in one run. Usage: bash bench/run.sh [RUNS]   (default 20)
# See bench/README.md for what the numbers mean.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

RUNS=${1:-20}
case $RUNS in ''|*[!0-9]*|0) echo "usage: $0 [RUNS>=1]" >&2; exit 2 ;; esac
PYBOX=${PYBOX:-$REPO/.venv/bin/pybox}
VENV_PY=${VENV_PY:-$(dirname "$PYBOX")/python}
TOOLS=(pybox podman runc)
IMPORT_RUNS=5
START=$SECONDS

bench_init
bench_need podman:podman skopeo:skopeo umoci:umoci docker-registry:docker-registry runc:runc \
    /usr/bin/time:time curl:curl /usr/bin/busybox:busybox-static
[ -x "$PYBOX" ] || bench_die "$PYBOX missing: run 'make venv' first"
[ -x "$VENV_PY" ] || bench_die "$VENV_PY missing (VENV_PY overrides)"
# c/storage's overlay driver refuses a runroot path longer than 50 characters.
[ ${#BENCH_WORK} -le 47 ] || bench_die "BENCH_BASE is too long for podman's runroot ($BENCH_WORK/pr)"
export BENCH_PY

W=$BENCH_WORK
RESULTS=$W/results.tsv       # the three tools, timed round-robin
REFERENCE=$W/reference.tsv   # the venv's bare `python -c pass`, once per round
WARMUP=$W/warmup.tsv         # one untimed run of each tool before the rounds
: > "$RESULTS"; : > "$REFERENCE"; : > "$WARMUP"

# This environment sets PYTHONDONTWRITEBYTECODE=1: a pybox started with it
# cannot cache what it compiles. A normal install has bytecode caches, so
# pybox (and the reference Python) run without it, after one compileall.
NOPYC=(env -u PYTHONDONTWRITEBYTECODE)

# pybox's cgroups are <hierarchy>/pybox/<id> (v1 and hybrid: one per
# controller mount; v2: /sys/fs/cgroup/pybox/<id>).
pybox_cgroups() {
    find /sys/fs/cgroup/*/pybox /sys/fs/cgroup/pybox -mindepth 1 -maxdepth 1 -type d 2>/dev/null \
        | sort || true
}
# Those present before the start belong to someone else (another session's
# container, running or leaked); the end-of-run check ignores them.
pybox_cgroups > "$W/cgroups.before"
[ ! -s "$W/cgroups.before" ] ||
    bench_log "note: $(wc -l < "$W/cgroups.before") pybox cgroup dirs exist already; not ours, ignored"

bench_log "compiling bytecode (untimed)"
SRC=()
for dir in pybox registry runtime builder; do [ -d "$REPO/$dir" ] && SRC+=("$REPO/$dir"); done
SITE=$("${NOPYC[@]}" "$VENV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"${NOPYC[@]}" "$VENV_PY" -m compileall -q "${SRC[@]}" "$SITE" >/dev/null ||
    bench_log "compileall reported errors (a file being edited?); its modules compile at each start"

# --- image, registry, and each tool's copy of the image (all untimed) --------

bench_log "building the busybox image with umoci"
bench_busybox_image "$W/oci" bb
bench_registry_start
REF=$BENCH_REGISTRY_HOST/bench/busybox:v1
# podman and skopeo run in a private mount namespace with per-run directories
# over /var/lib/containers and /run/containers (see BENCH_ISOLATE in lib.sh).
bench_mountpoint /var/lib/containers 700
bench_mountpoint /run/containers 755
bench_isolated "$W/push"
timeout 120 "${BENCH_ISOLATED[@]}" skopeo copy -q --preserve-digests --dest-tls-verify=false \
    "oci:$W/oci:bb" "docker://$REF"

cat > "$W/registries.conf" <<EOF
unqualified-search-registries = []
[[registry]]
location = "$BENCH_REGISTRY_HOST"
insecure = true
EOF
cat > "$W/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$W/podman-default/root"
runroot = "$W/podman-default/run"
EOF
export CONTAINERS_CONF=$HERE/containers.conf
export CONTAINERS_REGISTRIES_CONF=$W/registries.conf
export CONTAINERS_STORAGE_CONF=$W/storage.conf

# pybox: one store, pulled once, used by every run.
PYBOX_ROOT_DIR=$W/pybox
bench_log "pybox pull $REF"
timeout 120 "${NOPYC[@]}" "$PYBOX" --root "$PYBOX_ROOT_DIR" pull -q "$REF" >/dev/null

# podman: one store, run dir and tmp dir, the same isolation for every command.
PD=$W/podman
mkdir -p "$PD/tmp" "$PD/net" "$W/pr"
bench_isolated "$PD"
PODMAN=("${BENCH_ISOLATED[@]}" podman --root "$PD/root" --runroot "$W/pr" --tmpdir "$PD/tmp"
        --network-config-dir "$PD/net" --storage-driver overlay)
podman_cleanup() {
    [ -d "$PD/root" ] || return 0
    TMPDIR=$PD/tmp timeout 60 "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1 || true
}
bench_at_exit podman_cleanup
bench_log "podman pull $REF"
TMPDIR=$PD/tmp timeout 120 "${PODMAN[@]}" pull -q --tls-verify=false "$REF" >/dev/null

# runc: the image unpacked by umoci, config.json from `runc spec` (its
# namespaces, network included, mounts, capabilities, read-only root) running
# `true` without a terminal; its state under $W, a fresh container id per run.
RB=$W/runc
umoci unpack --image "$W/oci:bb" "$RB/bundle" >/dev/null
rm -f "$RB/bundle/config.json"
runc spec --bundle "$RB/bundle"
"$BENCH_PY" -I - "$RB/bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["true"]
json.dump(spec, open(path, "w"), indent=1)
EOF
RUNC=(runc --root "$RB/state")
RUNC_ID=pybox-bench-$$
runc_cleanup() {
    local id
    [ -d "$RB/state" ] || return 0
    for id in $("${RUNC[@]}" list -q 2>/dev/null); do
        timeout 30 "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || bench_log "runc delete -f $id failed"
    done
}
bench_at_exit runc_cleanup

# Nothing is pulled while timing: the registry goes before the first run.
bench_registry_stop

# --- the runs ----------------------------------------------------------------

run_pybox() {
    bench_measure "$2" pybox "$1" -- "${NOPYC[@]}" "$PYBOX" --root "$PYBOX_ROOT_DIR" \
        run --rm --network none "$REF" true
}
run_podman() {
    TMPDIR=$PD/tmp bench_measure "$2" podman "$1" -- "${PODMAN[@]}" \
        run --rm --network none --runtime runc "$REF" true
}
run_runc() {
    local id=$RUNC_ID-$1 rc=0
    bench_measure "$2" runc "$1" -- "${RUNC[@]}" run --bundle "$RB/bundle" "$id" || rc=$?
    # `runc run` deletes a container it ran in the foreground; this is for the rest.
    if "${RUNC[@]}" state "$id" >/dev/null 2>&1; then "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || true; fi
    return $rc
}

bench_log "warm-up: one untimed run of each tool"
for tool in "${TOOLS[@]}"; do
    "run_$tool" warmup "$WARMUP" || bench_die "$tool does not run at all (see above)"
done

bench_sync
for ((run = 1; run <= RUNS; run++)); do
    order=()
    for ((k = 0; k < ${#TOOLS[@]}; k++)); do
        order+=("${TOOLS[(run - 1 + k) % ${#TOOLS[@]}]}")
    done
    [ $((run % 5)) != 1 ] || bench_log "run $run/$RUNS: ${order[*]} (order rotates each round)"
    for tool in "${order[@]}"; do
        "run_$tool" "$run" "$RESULTS" || true
        bench_sync
    done
    bench_measure "$REFERENCE" python "$run" -- "${NOPYC[@]}" "$VENV_PY" -c pass || true
    bench_measure "$REFERENCE" python3 "$run" -- "${NOPYC[@]}" "$BENCH_PY" -c pass || true
done

# --- what a run must leave behind: nothing -----------------------------------

left=$(bench_mounts_under "$W")
[ -z "$left" ] || bench_die "mounts left behind under $W: $left"
# A cgroup dir that appeared during the benchmark and is still there. Another
# session's container may be running right now: give it a few seconds.
for _ in $(seq 50); do
    leaked=$(comm -13 "$W/cgroups.before" <(pybox_cgroups))
    [ -n "$leaked" ] || break
    sleep 0.1
done
[ -z "$leaked" ] || bench_die "cgroup dirs left under /sys/fs/cgroup/*/pybox/: $leaked"
# runc names a container's cgroups after its id (no cgroupsPath in the spec).
leaked=$(find /sys/fs/cgroup -maxdepth 3 -type d -name "$RUNC_ID-*" 2>/dev/null || true)
[ -z "$leaked" ] || bench_die "runc cgroup dirs left: $leaked"
[ -z "$("${RUNC[@]}" list -q 2>/dev/null)" ] || bench_die "runc containers left: $("${RUNC[@]}" list -q)"

# --- what `import pybox.cli.app` costs (untimed, after the rounds) ----------

for ((k = 1; k <= IMPORT_RUNS; k++)); do
    (cd "$W" && "${NOPYC[@]}" "$VENV_PY" -X importtime -c 'import pybox.cli.app' 2> "$W/importtime.$k")
done

# --- report ------------------------------------------------------------------

echo
layer=$("$BENCH_PY" -I - "$W/oci" <<'EOF'
import json, os, sys
layout = sys.argv[1]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
index = json.load(open(os.path.join(layout, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
sizes = [l["size"] for l in manifest["layers"]]
print(f"{len(sizes)} layer, {sum(sizes) / 1e6:.1f} MB gzip, config {manifest['config']['digest'][:19]}…")
EOF
)
echo "image     $REF ($layer; busybox $(busybox | head -n 1 | cut -d' ' -f2), static, by umoci)"
echo "command   true, --rm, --network none; $RUNS runs per tool, round-robin, after one untimed warm-up each"
echo "pybox     PYTHONDONTWRITEBYTECODE unset, bytecode compiled beforehand, store pulled once"
echo
BENCH_DIGITS=3 bench_summary "$RESULTS" "${TOOLS[@]}" -- pybox/podman pybox/runc
echo
BENCH_DIGITS=3 bench_summary "$REFERENCE" python python3 | sed 1d |
    awk -v venv="$VENV_PY" -v sys="$BENCH_PY" '{
        printf "reference %s -c pass: median %s s (min %s, max %s), RSS %s MB\n",
            ($1 == "python" ? venv : sys " (no venv)"), $3, $4, $5, $6 }'
"$BENCH_PY" -I - "$IMPORT_RUNS" "$W"/importtime.* <<'EOF'
import collections, statistics, sys
runs, paths = int(sys.argv[1]), sys.argv[2:]
TARGET = "pybox.cli.app"
startup, inside = [], collections.defaultdict(list)   # per run; module -> [(cumulative, self)]
for path in paths:
    pending, start = [], 0
    for line in open(path):
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cum, name = line[len("import time:"):].split("|")
        entry = (name.strip(), int(cum), int(own))
        pending.append(entry)
        if name[1:2] != " ":                      # depth 0: a subtree is complete (post-order)
            if entry[0] == TARGET:
                for module, c, o in pending:
                    inside[module].append((c, o))
            else:
                start += entry[1]
            pending = []
    startup.append(start)
med = {m: statistics.median(c for c, _ in v) for m, v in inside.items()}
own = {m: statistics.median(o for _, o in v) for m, v in inside.items()}
print(f"startup   {statistics.median(startup) / 1000:.0f} ms of imports before any pybox code"
      f" (site, with the editable install's finder), median of {runs}")
print(f"imports   import {TARGET}: {med.get(TARGET, 0) / 1000:.0f} ms, {len(med) - 1} more modules"
      f" (median of {runs} runs); top 10 cumulative:")
rows = [("module", "cumul ms", "self ms")]
for name in sorted(med, key=med.get, reverse=True)[:10]:
    rows.append((name, f"{med[name] / 1000:.1f}", f"{own[name] / 1000:.1f}"))
w = [max(len(r[i]) for r in rows) for i in range(3)]
for r in rows:
    print("  " + r[0].ljust(w[0]) + "  " + r[1].rjust(w[1]) + "  " + r[2].rjust(w[2]))
EOF
echo
echo "checks    nothing mounted under $W; no new dir under /sys/fs/cgroup/*/pybox/;" \
    "no runc container or cgroup left"
echo "versions  pybox $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "(worktree), $(podman --version), $(runc --version | head -n 1)," \
    "$("$VENV_PY" -c 'import platform; print("Python", platform.python_version())'), $(nproc) CPUs"
echo "elapsed   $((SECONDS - START)) s for the whole benchmark"
