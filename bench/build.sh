#!/usr/bin/env bash
# `pybox build` against `buildah bud --layers` on a small Containerfile (busybox
# base, 4 RUN and 3 COPY steps): a cached rebuild with nothing changed, and a
# --no-cache build, alternated round-robin in one run.
# Usage: bash bench/build.sh [RUNS]   (default 5). See bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

RUNS=${1:-5}
case $RUNS in ''|*[!0-9]*|0) echo "usage: $0 [RUNS>=1]" >&2; exit 2 ;; esac
PYBOX=${PYBOX:-$REPO/.venv/bin/pybox}
VENV_PY=${VENV_PY:-$(dirname "$PYBOX")/python}
TOOLS=(pybox buildah)
KINDS=(cached nocache)
BUILD_TIMEOUT=${BENCH_BUILD_TIMEOUT:-600}   # seconds for one build, either tool
TAG=bench-app                               # both tools name it localhost/bench-app:latest
START=$SECONDS

bench_init
bench_need buildah:buildah skopeo:skopeo umoci:umoci docker-registry:docker-registry runc:runc \
    /usr/bin/time:time curl:curl /usr/bin/busybox:busybox-static
[ -x "$PYBOX" ] || bench_die "$PYBOX missing: run 'make venv' first"
[ -x "$VENV_PY" ] || bench_die "$VENV_PY missing (VENV_PY overrides)"
timeout 60 env -u PYTHONDONTWRITEBYTECODE "$PYBOX" build --help >/dev/null 2>&1 ||
    bench_die "$PYBOX has no working 'build' command"
# c/storage's overlay driver refuses a runroot path longer than 50 characters.
[ ${#BENCH_WORK} -le 47 ] || bench_die "BENCH_BASE is too long for buildah's runroot ($BENCH_WORK/br)"
export BENCH_PY

W=$BENCH_WORK
declare -A RESULTS=([cached]=$W/cached.tsv [nocache]=$W/nocache.tsv)
WARMUP=$W/warmup.tsv
: > "${RESULTS[cached]}"; : > "${RESULTS[nocache]}"; : > "$WARMUP"

# pybox's RUN containers get cgroups too; those present before the start
# belong to someone else.
bench_pybox_cgroups > "$W/cgroups.before"

bench_compile "$REPO" "$VENV_PY"

# --- base image, registry, one pull by each tool (all untimed) --------------

bench_log "building the busybox image with umoci"
bench_busybox_image "$W/oci" bb
bench_registry_start
REF=$BENCH_REGISTRY_HOST/bench/busybox:v1
bench_mountpoint /var/lib/containers 700
bench_mountpoint /run/containers 755
bench_mountpoint /run/runc 700
bench_isolated "$W/push"
timeout 120 "${BENCH_ISOLATED[@]}" skopeo copy -q --preserve-digests --dest-tls-verify=false \
    "oci:$W/oci:bb" "docker://$REF"
bench_podman_config "$W"   # registries.conf (loopback registry insecure), storage.conf, containers.conf

# --- the build context ---------------------------------------------------------

CTX=$W/ctx
mkdir -p "$CTX/etc" "$CTX/src" "$CTX/assets"
cat > "$CTX/Containerfile" <<EOF
FROM $REF
RUN busybox mkdir -p /usr/local/bin && busybox --install -s /usr/local/bin
COPY etc/ /etc/app/
RUN mkdir -p /srv/data /var/log/app && echo built > /srv/data/stamp
COPY src/ /srv/app/
WORKDIR /srv/app
RUN cat *.py | wc -l > /srv/data/lines && ls -lR /srv/app > /srv/data/listing
COPY assets/blob.bin /srv/data/
ENV APP_HOME=/srv/app APP_MODE=bench
RUN sha256sum /srv/data/blob.bin > /srv/data/blob.sha256
CMD ["sh"]
EOF
printf '%s\n' '[app]' 'name = bench' 'workers = 4' 'listen = 127.0.0.1:8080' > "$CTX/etc/app.conf"
printf '%s\n' '[logging]' 'level = info' 'path = /var/log/app/app.log' > "$CTX/etc/logging.conf"
for module in main util; do
    "$BENCH_PY" -I -c 'import sys
for i in range(200):
    print(f"def {sys.argv[1]}_{i}(x):\n    return x * {i} + len(\"{sys.argv[1]}\")\n")' "$module" \
        > "$CTX/src/$module.py"
done
printf 'The bench app: %s\n' "two modules, two configs, one binary asset" > "$CTX/src/README.txt"
# A binary asset: seeded bytes, the same in every run.
"$BENCH_PY" -I -c 'import random, sys
sys.stdout.buffer.write(random.Random(1).randbytes(512 * 1024))' > "$CTX/assets/blob.bin"

# --- pybox and buildah: their stores, one pull each (untimed) ---------------

PYBOX_ROOT_DIR=$W/pybox
bench_log "pybox pull $REF"
timeout 120 "${NOPYC[@]}" "$PYBOX" --root "$PYBOX_ROOT_DIR" pull -q "$REF" >/dev/null

# buildah: overlay storage under $W (runroot short: c/storage's 50-character
# limit), run in a private mount namespace with per-run directories over
# /var/lib/containers (c/image's blob-info cache), /run/containers, and
# /run/runc (runc's default state root, where buildah's RUN containers live).
BD=$W/buildah
mkdir -p "$BD/tmp" "$BD/varlib" "$BD/run-containers" "$BD/runc-state" "$W/br"
echo '{"default": [{"type": "insecureAcceptAnything"}]}' > "$BD/policy.json"
BUILDAH=("${BENCH_ISOLATE[@]}" "$BD/varlib:/var/lib/containers" "$BD/run-containers:/run/containers"
         "$BD/runc-state:/run/runc" --
         buildah --root "$BD/root" --runroot "$W/br" --storage-driver overlay --cgroup-manager cgroupfs
         --short-name-alias-conf "$BD/aliases.conf")
buildah_cleanup() {
    local id
    for id in $(runc --root "$BD/runc-state" list -q 2>/dev/null); do
        timeout 30 runc --root "$BD/runc-state" delete -f "$id" >/dev/null 2>&1 ||
            bench_log "runc delete -f $id failed"
    done
    [ -d "$BD/root" ] || return 0
    TMPDIR=$BD/tmp timeout 60 "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
}
bench_at_exit buildah_cleanup
bench_log "buildah pull $REF"
TMPDIR=$BD/tmp timeout 120 "${BUILDAH[@]}" pull -q --tls-verify=false \
    --signature-policy "$BD/policy.json" "$REF" >/dev/null

# Nothing is pulled while timing: the registry goes before the first build.
bench_registry_stop

# --- the builds ------------------------------------------------------------

# build_TOOL KIND RUN RESULTS: one build; KIND cached (the cache is warm and
# nothing changed) or nocache. RUN steps use the host's network in both, as
# pybox build has no other yet; buildah's settings otherwise follow
# tests/support/buildah.py (--format docker, runc, no identity label).
build_pybox() {
    local flags=()
    [ "$1" = cached ] || flags=(--no-cache)
    bench_measure "$3" pybox "$1-$2" -- timeout "$BUILD_TIMEOUT" "${NOPYC[@]}" "$PYBOX" \
        --root "$PYBOX_ROOT_DIR" build -q "${flags[@]}" -f "$CTX/Containerfile" -t "$TAG" "$CTX"
}
build_buildah() {
    local flags=()
    [ "$1" = cached ] || flags=(--no-cache)
    TMPDIR=$BD/tmp bench_measure "$3" buildah "$1-$2" -- timeout "$BUILD_TIMEOUT" "${BUILDAH[@]}" \
        bud --layers --format docker --runtime runc --isolation oci --network host \
        --identity-label=false --signature-policy "$BD/policy.json" \
        -q "${flags[@]}" -f "$CTX/Containerfile" -t "$TAG" "$CTX"
}

# One untimed build of each into the empty cache: fills the cache the cached
# rebuilds hit, and stops the benchmark if a tool cannot build at all.
bench_log "warm-up: one untimed build of each tool"
for tool in "${TOOLS[@]}"; do
    "build_$tool" cached warmup "$WARMUP" || bench_die "$tool cannot build the context (see above)"
done

bench_sync
for ((run = 1; run <= RUNS; run++)); do
    order=()
    for ((k = 0; k < ${#TOOLS[@]}; k++)); do
        order+=("${TOOLS[(run - 1 + k) % ${#TOOLS[@]}]}")
    done
    bench_log "run $run/$RUNS: ${order[*]} (order rotates each round)"
    for kind in "${KINDS[@]}"; do
        for tool in "${order[@]}"; do
            "build_$tool" "$kind" "$run" "${RESULTS[$kind]}" || true
            bench_sync
        done
    done
done

# --- what a run must leave behind: nothing -----------------------------------

bench_check_pybox_leftovers "$W/cgroups.before"
[ -z "$(runc --root "$BD/runc-state" list -q 2>/dev/null)" ] ||
    bench_die "runc containers of buildah left: $(runc --root "$BD/runc-state" list -q)"
left=$(TMPDIR=$BD/tmp timeout 60 "${BUILDAH[@]}" containers -q)
[ -z "$left" ] || bench_die "buildah containers left: $left"

# --- report ------------------------------------------------------------------

# The image ID a build printed (-q): its last line, without "sha256:".
image_id() { tail -n 1 "$W/logs/$1.$2.out" 2>/dev/null | sed 's/^sha256://'; }
# Cached rebuilds whose image ID the tool had made before in this run: a
# cache hit on every step gives an image built earlier (the warm-up's, or a
# --no-cache build's, whichever the tool's cache keeps), a step built again
# a new one (its history has a new timestamp).
cache_hits() {
    local tool=$1 n=0 run id seen
    seen=" $(image_id "$tool" cached-warmup) "
    for ((run = 1; run <= RUNS; run++)); do
        id=$(image_id "$tool" "cached-$run")
        case $seen in *" $id "*) [ -z "$id" ] || n=$((n + 1)) ;; esac
        seen+="$id $(image_id "$tool" "nocache-$run") "
    done
    echo "$n/$RUNS"
}
# Layers of the final image, from each tool's own inspect (a sanity check
# that both made one layer per RUN and COPY on top of the base).
pybox_layers=$("${NOPYC[@]}" "$PYBOX" --root "$PYBOX_ROOT_DIR" inspect "$TAG" 2>/dev/null |
    "$BENCH_PY" -I -c 'import json, sys; print(len(json.load(sys.stdin)[0]["RootFS"]["Layers"]))' \
    2>/dev/null || echo '?')
buildah_layers=$(TMPDIR=$BD/tmp timeout 60 "${BUILDAH[@]}" inspect --type image "$TAG" 2>/dev/null |
    "$BENCH_PY" -I -c 'import json, sys; print(len(json.loads(json.load(sys.stdin)["Config"])["rootfs"]["diff_ids"]))' \
    2>/dev/null || echo '?')

echo
echo "base      $REF (busybox $(busybox | head -n 1 | cut -d' ' -f2), static, one layer by umoci), pulled once by each tool"
echo "context   $(find "$CTX" -type f | wc -l) files, $(du -sk "$CTX" | cut -f1) KiB;" \
    "$(grep -c '^RUN' "$CTX/Containerfile") RUN, $(grep -c '^COPY' "$CTX/Containerfile") COPY," \
    "$(grep -c -E '^(ENV|WORKDIR|CMD)' "$CTX/Containerfile") metadata steps (ENV, WORKDIR, CMD)"
echo "layers    final image: pybox $pybox_layers, buildah $buildah_layers (base included)"
echo "runs      $RUNS rounds after one untimed build each (empty cache); per round: cached rebuilds, then" \
    "--no-cache builds, starting tool rotating; registry stopped while timing"
echo
echo "cached rebuild, nothing changed (an image ID made before, i.e. all steps cached: pybox $(cache_hits pybox)," \
    "buildah $(cache_hits buildah)):"
bench_summary "${RESULTS[cached]}" "${TOOLS[@]}" -- pybox/buildah
echo
echo "--no-cache build:"
bench_summary "${RESULTS[nocache]}" "${TOOLS[@]}" -- pybox/buildah
echo
echo "checks    nothing mounted under $W; no new dir under /sys/fs/cgroup/*/pybox/;" \
    "no buildah or runc container left"
echo "versions  pybox $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "(worktree), $(buildah --version | cut -d' ' -f1-3), $(runc --version | head -n 1)," \
    "$("$VENV_PY" -c 'import platform; print("Python", platform.python_version())'), $(nproc) CPUs"
echo "elapsed   $((SECONDS - START)) s for the whole benchmark"
