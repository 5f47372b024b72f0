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
REFERENCE=$W/reference.tsv   # bare `python -c pass`, the venv's and Debian's, once per round
WARMUP=$W/warmup.tsv         # one untimed run of each tool before the rounds
: > "$RESULTS"; : > "$REFERENCE"; : > "$WARMUP"

# Cgroups present before the start belong to someone else (another session's
# container, running or leaked); the end-of-run check ignores them.
bench_pybox_cgroups > "$W/cgroups.before"
[ ! -s "$W/cgroups.before" ] ||
    bench_log "note: $(wc -l < "$W/cgroups.before") pybox cgroup dirs exist already; not ours, ignored"

bench_compile "$REPO" "$VENV_PY"

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

bench_podman_config "$W"

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

# --- what `import pybox.cli.app` costs (untimed, after the rounds) ----------

# The typer app; and pybox.cli.run, `pybox run`'s own parser, when the tree
# has it (then `run` does not import the typer app at all).
IMPORT_TARGETS=(pybox.cli.app)
[ ! -f "$REPO/pybox/cli/run.py" ] || IMPORT_TARGETS+=(pybox.cli.run)
for target in "${IMPORT_TARGETS[@]}"; do
    for ((k = 1; k <= IMPORT_RUNS; k++)); do
        (cd "$W" && "${NOPYC[@]}" "$VENV_PY" -X importtime -c "import $target" \
            2> "$W/importtime.$target.$k")
    done
done

# --- BENCH_PROFILE=1: where a `pybox run` spends its time (untimed) ----------

PROFILE_RUNS=5
SPY_RUNS=3
PYSPY=$(dirname "$VENV_PY")/py-spy
PYBOX_ARGS=(--root "$PYBOX_ROOT_DIR" run --rm --network none "$REF" true)
if [ -n "${BENCH_PROFILE:-}" ]; then
    bench_log "profiling pybox: phases, -X importtime, py-spy"
    mkdir -p "$W/profile"
    # Wall-clock phases without a profiler: an audit hook notes when a few
    # modules start importing, the first fork and PID 1's exec (written to an
    # fd opened before, as PID 1 no longer sees $W after pivot_root). The
    # markers name pybox modules: one that is renamed merges two phases.
    cat > "$W/profile/phases.py" <<'EOF'
import os, sys, time
MARKS = {  # module whose import starts a phase -> what the phase does (as of this writing)
    "typer": "import typer, build the typer command",
    "typer._adapters": "typer parses the options (imports pydantic, a TypeAdapter each)",
    "argparse": "run's own parser: import pybox.cli.run, common (logging, dataclasses), parse",
    "pybox.registry.ensure": "import pybox.registry.ensure, pybox.store",
    "pybox.runtime.run": "import pybox.runtime.run (cgroups, spec, runconfig); Store.open,"
                         " ensure_image, plan_process",
    "pybox.runtime.seccomp": "plan_security (import seccomp, build the filter), record,"
                             " overlay plan, cgroup create"}
seen = {}
fd = os.open(os.environ["PHASES_OUT"], os.O_WRONLY | os.O_APPEND)
def note(marker, label):
    try:  # never into pybox's way (a closed fd in PID 1, say)
        os.write(fd, f"{time.time():.6f}\t[{marker}] {label}\n".encode())
    except OSError:
        pass
def hook(event, args):
    if event == "import" and args[0] in MARKS and args[0] not in seen:
        seen[args[0]] = note("import " + args[0], MARKS[args[0]])
    elif event == "os.fork" and "fork" not in seen:
        seen["fork"] = note("fork", "child: join the cgroups, unshare, fork PID 1;"
                            " PID 1: mounts, pivot_root, seccomp load, capabilities")
    elif event == "os.exec" and "exec" not in seen:
        seen["exec"] = note("exec", "the container runs `true`; pybox waits, removes cgroup and record")
note("python", "import pybox.cli and what it imports first")
sys.addaudithook(hook)
sys.argv[0] = "pybox"
from pybox.cli import main
try:
    main()
finally:
    note("main returned", "interpreter exit (finalization)")
EOF
    for ((k = 1; k <= PROFILE_RUNS; k++)); do
        out=$W/profile/phases.$k
        date +%s.%N | awk '{ printf "%s\t[shell] interpreter start, site (the editable finder)\n", $1 }' \
            > "$out"
        (cd "$W" && PHASES_OUT=$out "${NOPYC[@]}" "$VENV_PY" "$W/profile/phases.py" "${PYBOX_ARGS[@]}") ||
            bench_log "profiled run $k failed"
        date +%s.%N | awk '{ printf "%s\t[end]\n", $1 }' >> "$out"
        (cd "$W" && "${NOPYC[@]}" "$VENV_PY" -X importtime -m pybox "${PYBOX_ARGS[@]}" \
            2> "$W/profile/importtime.$k") || bench_log "importtime run $k failed"
    done
    if [ -x "$PYSPY" ]; then
        for ((k = 1; k <= SPY_RUNS; k++)); do
            (cd "$W" && timeout 120 "${NOPYC[@]}" "$PYSPY" record --subprocesses -r 500 -f raw \
                -o "$W/profile/spy.$k" -- "$VENV_PY" -m pybox "${PYBOX_ARGS[@]}" \
                > "$W/profile/spy.$k.log" 2>&1) || bench_log "py-spy run $k failed"
        done
    fi
fi

# --- what a run must leave behind: nothing -----------------------------------

bench_check_pybox_leftovers "$W/cgroups.before"
# runc names a container's cgroups after its id (no cgroupsPath in the spec).
leaked=$(find /sys/fs/cgroup -maxdepth 3 -type d -name "$RUNC_ID-*" 2>/dev/null || true)
[ -z "$leaked" ] || bench_die "runc cgroup dirs left: $leaked"
[ -z "$("${RUNC[@]}" list -q 2>/dev/null)" ] || bench_die "runc containers left: $("${RUNC[@]}" list -q)"

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
"$BENCH_PY" -I - "$W" "$IMPORT_RUNS" "${IMPORT_TARGETS[@]}" <<'EOF'
import collections, statistics, sys
w, runs, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for n, target in enumerate(targets):
    startup, inside = [], collections.defaultdict(list)   # per run; module -> [(cumulative, self)]
    for k in range(1, runs + 1):
        pending, start = [], 0
        for line in open(f"{w}/importtime.{target}.{k}"):
            if not line.startswith("import time:") or "imported package" in line:
                continue
            own, cum, name = line[len("import time:"):].split("|")
            entry = (name.strip(), int(cum), int(own))
            pending.append(entry)
            if name[1:2] != " ":                      # depth 0: a subtree is complete (post-order)
                if entry[0] == target:
                    for module, c, o in pending:
                        inside[module].append((c, o))
                else:
                    start += entry[1]
                pending = []
        startup.append(start)
    med = {m: statistics.median(c for c, _ in v) for m, v in inside.items()}
    own = {m: statistics.median(o for _, o in v) for m, v in inside.items()}
    if n == 0:
        print(f"startup   {statistics.median(startup) / 1000:.0f} ms of imports before any pybox code"
              f" (site, with the editable install's finder), median of {runs}")
    top = 10 if n == 0 else 5
    print(f"imports   import {target}: {med.get(target, 0) / 1000:.0f} ms, {len(med) - 1} more modules"
          f" (median of {runs} runs); top {top} cumulative:")
    rows = [("module", "cumul ms", "self ms")]
    for name in sorted(med, key=med.get, reverse=True)[:top]:
        rows.append((name, f"{med[name] / 1000:.1f}", f"{own[name] / 1000:.1f}"))
    w_ = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  " + r[0].ljust(w_[0]) + "  " + r[1].rjust(w_[1]) + "  " + r[2].rjust(w_[2]))
EOF
if [ -n "${BENCH_PROFILE:-}" ]; then
    echo
    "$BENCH_PY" -I - "$W/profile" "$PROFILE_RUNS" "$SPY_RUNS" <<'EOF'
import collections, glob, os, re, statistics, sys
d, runs, spy_runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
med = statistics.median

# 1. Wall-clock phases from the audit-hook markers.
phases, order, totals = collections.defaultdict(list), [], []
for path in sorted(glob.glob(f"{d}/phases.*[0-9]")):
    marks = sorted((float(t), label) for t, label in (l.rstrip("\n").split("\t") for l in open(path)))
    for (t0, label), (t1, _) in zip(marks, marks[1:]):
        phases[label].append(1000 * (t1 - t0))
        if label not in order:
            order.append(label)
    totals.append(1000 * (marks[-1][0] - marks[0][0]))
if totals:
    print(f"profile   one `pybox run ... true`, wall clock by phase (audit-hook markers, no profiler;"
          f" median of {len(totals)}; [where a phase starts] what runs until the next one):")
    for label in order:
        print(f"  {med(phases[label]):6.0f} ms  {label}")
    print(f"  {med(totals):6.0f} ms  total")

# 2. -X importtime of the same command: self time summed by top-level package.
per_run_pkg, per_run_mod, per_run_total = [], [], []
for path in sorted(glob.glob(f"{d}/importtime.*")):
    pkg, mod = collections.Counter(), collections.Counter()
    for line in open(path):
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, _, name = line[len("import time:"):].split("|")
        name = name.strip()
        pkg[name.split(".")[0]] += int(own)
        mod[name] += int(own)
    per_run_pkg.append(pkg); per_run_mod.append(mod); per_run_total.append(sum(pkg.values()))
if per_run_pkg:
    def medians(runs_):
        keys = set().union(*runs_)
        return {k: med([r.get(k, 0) for r in runs_]) for k in keys}
    pkg, mod = medians(per_run_pkg), medians(per_run_mod)
    print(f"\nimports   -X importtime of the same command: {med(per_run_total) / 1000:.0f} ms in"
          f" {len(mod)} imports (self times, median of {len(per_run_pkg)}); by top-level package:")
    print("  " + ", ".join(f"{k} {v / 1000:.0f}" for k, v in sorted(pkg.items(), key=lambda kv: -kv[1])[:12])
          + " ms")
    print("  slowest modules (self ms): " + ", ".join(
        f"{k} {v / 1000:.1f}" for k, v in sorted(mod.items(), key=lambda kv: -kv[1])[:10]))

# 3. py-spy samples by phase, first matching rule; the names are pybox's and
# typer's functions as of this writing ("other" grows when they change).
RULES = [
    ("_child@runtime/process.py", "forked child and PID 1 (seccomp load, mounts) up to exec"),
    ("ContainerRecord.remove@", "--rm: remove the container's directory"),
    ("plan_security@", "plan_security (import seccomp, build the filter)"),
    ("V1Cgroup.create@|V2Cgroup.create@|open_cgroup@", "cgroup create"),
    ("kill_all@|destroy@cgroups", "cgroup kill_all and destroy"),
    ("run_container@runtime/process.py", "run_container in the parent (fork, wait)"),
    ("run_image@runtime/run.py", "run_image, the rest (record, spec JSON, overlay plan, lock)"),
    ("ensure_image@", "ensure_image (find the image in the store)"),
    ("<module>@registry/ensure.py", "import pybox.registry.ensure, pybox.store"),
    ("<module>@runtime/run.py", "import pybox.runtime.run (cgroups, spec, runconfig, ...)"),
    ("run@cli/containers.py|run_command@cli/run.py", "run command, the rest (RunOptions, Store.open)"),
    ("<module>@cli/run.py|<module>@cli/common.py", "import pybox.cli.run (argparse, logging, ...)"),
    ("run_main@cli/run.py", "run's own parser: build it, parse, configure"),
    ("<module>@typer/_adapters.py", "typer option parsing: import pydantic"),
    ("build_runtime_param@", "typer option parsing: pydantic TypeAdapters"),
    ("Typer.__call__@", "typer/click: build the command, parse, dispatch"),
    ("_register@cli/app.py", "import the CLI command modules"),
    ("<module>@cli/app.py", "import pybox.cli.app (typer, logging, dataclasses, ...)"),
    ("@<frozen site>", "interpreter start: site (the editable install's finder)"),
]
RULES = [(re.compile("|".join(map(re.escape, pat.split("|")))), label) for pat, label in RULES]
frame = re.compile(r"^(.*) \((.*):\d+\)$")
count = collections.Counter()
files = sorted(p for p in glob.glob(f"{d}/spy.*[0-9]") if os.path.getsize(p))
for path in files:
    for line in open(path):
        stack, n = line.rstrip("\n").rsplit(" ", 1)
        frames = []
        for f in stack.split(";")[1:]:
            m = frame.match(f)
            frames.append(f"{m.group(1)}@{'/'.join(m.group(2).split('/')[-2:])}" if m else f)
        stack = ";".join(frames)
        count[next((label for rule, label in RULES if rule.search(stack)),
                   "no Python frame (interpreter start and finalization), other")] += int(n)
total = sum(count.values())
if total:
    print(f"\npy-spy    record --subprocesses -r 500, {len(files)} runs, {total / len(files):.0f} samples"
          " a run; py-spy stops the process at each sample, which stretches syscall-heavy"
          " parts: read shares, and ms from the phases above")
    for label, n in count.most_common():
        print(f"  {100 * n / total:5.1f} %  {label}")
elif spy_runs:
    print("\npy-spy    no samples (is .venv/bin/py-spy installed?)")
EOF
fi
echo
echo "checks    nothing mounted under $W; no new dir under /sys/fs/cgroup/*/pybox/;" \
    "no runc container or cgroup left"
echo "versions  pybox $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "(worktree), $(podman --version), $(runc --version | head -n 1)," \
    "$("$VENV_PY" -c 'import platform; print("Python", platform.python_version())'), $(nproc) CPUs"
echo "elapsed   $((SECONDS - START)) s for the whole benchmark"
