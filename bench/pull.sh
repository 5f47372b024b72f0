#!/usr/bin/env bash
# Cold pull of a ~300 MB, many-file, 4-layer image from a loopback registry:
# pybox against `podman pull` and `skopeo copy` (download only), alternated
# round-robin in one run. Usage: bash bench/pull.sh [RUNS]   (default 5)
# See bench/README.md for what the numbers mean.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

RUNS=${1:-5}
case $RUNS in ''|*[!0-9]*|0) echo "usage: $0 [RUNS>=1]" >&2; exit 2 ;; esac
# Bump when the image's composition changes: the cache is keyed by it.
IMAGE_VERSION=pull-v3
IMAGE_TAG=big
PYBOX=${PYBOX:-$REPO/.venv/bin/pybox}
TOOLS=(pybox podman skopeo)
START=$SECONDS

bench_init
bench_need podman:podman skopeo:skopeo umoci:umoci docker-registry:docker-registry \
    /usr/bin/time:time curl:curl gzip:gzip tar:tar flock:util-linux
[ -x "$PYBOX" ] || bench_die "$PYBOX missing: run 'make venv' first"
# c/storage's overlay driver refuses a runroot path longer than 50 characters.
[ ${#BENCH_WORK} -le $((50 - ${#RUNS} - 3)) ] ||
    bench_die "BENCH_BASE is too long for podman's runroot ($BENCH_WORK/pr$RUNS)"
export BENCH_PY

# --- the image: built once, cached under $BENCH_BASE/image-$IMAGE_VERSION ------

# Python helpers for the image: choose files from system trees, generate
# files, and describe the finished layout.
image_py() {
    "$BENCH_PY" -I - "$@" <<'EOF'
import glob, gzip, json, math, os, random, stat, sys, tarfile, zlib

MTIME = 1704067200  # 2024-01-01, for generated files

def walk_sorted(top):
    """Paths under top (dirs, regular files, symlinks), sorted, no symlink follow."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        yield dirpath, True
        for name in sorted(filenames):
            yield os.path.join(dirpath, name), False

def select(budget, sources):
    """NUL-separated relative paths from sources, in order, until budget bytes."""
    total = 0
    out = sys.stdout.buffer
    for src in sources:
        if not os.path.isdir(src) or os.path.islink(src):
            continue
        for path, is_dir in walk_sorted(src):
            st = os.lstat(path)
            if not (is_dir or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            if total >= budget:
                return
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
            out.write(path.lstrip("/").encode() + b"\0")

def corpus():
    """Real text to cut generated files from: the stdlib's sources, in order."""
    lines = []
    size = 0
    for path in sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True)):
        try:
            with open(path, "rb") as f:
                chunk = f.read().splitlines(keepends=True)
        except OSError:
            continue
        lines.extend(chunk)
        size += sum(map(len, chunk))
        if size > 16 << 20:
            break
    if not lines:
        sys.exit("no text corpus found under /usr/lib/python3*")
    return lines

def text(rng, lines, size):
    """size bytes of consecutive corpus lines from a random place."""
    i = rng.randrange(len(lines))
    parts, n = [], 0
    while n < size:
        parts.append(lines[i]); n += len(lines[i]); i = (i + 1) % len(lines)
    return b"".join(parts)[:size]

def mixed(rng, lines, size, random_share):
    """64 KiB blocks, random_share of them random bytes, the rest text."""
    parts, n = [], 0
    while n < size:
        block = min(65536, size - n)
        parts.append(rng.randbytes(block) if rng.random() < random_share else text(rng, lines, block))
        n += block
    return b"".join(parts)

def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (MTIME, MTIME))

def generate_app(rootfs):
    """Layer 3: an application tree of small config-like and mid-size files."""
    rng = random.Random(3)
    lines = corpus()
    exts = [".conf", ".json", ".yaml", ".txt", ".py", ".html", ".css", ".js"]
    app = os.path.join(rootfs, "srv/app")
    for k in range(20000):  # small files: 64 B .. 16 KiB, median ~900 B
        size = int(min(16384, max(64, rng.lognormvariate(math.log(900), 0.9))))
        put(f"{app}/mod{k % 50:02d}/sub{k // 50 % 20:02d}/file{k:05d}{exts[k % len(exts)]}",
            text(rng, lines, size))
    for k in range(90):  # mid-size: 32 KiB .. 1 MiB, log-uniform; 1 in 3 is a data file
        size = int(math.exp(rng.uniform(math.log(32 << 10), math.log(1 << 20))))
        if k % 3 == 2:
            put(f"{app}/data/blob{k:03d}.bin", mixed(rng, lines, size, 0.5))
        else:
            put(f"{app}/static/bundle{k:03d}.js", text(rng, lines, size))

def generate_vendor(rootfs, triplet_libs):
    """Layer 4: a few large binaries, plus changes to the lower layers."""
    rng = random.Random(4)
    lines = corpus()
    def concat(paths, size):
        parts, n = [], 0
        for p in paths:
            if n >= size:
                break
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                data = f.read(size - n)
            parts.append(data); n += len(data)
        return b"".join(parts)
    vendor = os.path.join(rootfs, "opt/vendor")
    put(f"{vendor}/lib/libbundle.so", concat(sorted(glob.glob(triplet_libs + "/*.so*")), 24 << 20))
    put(f"{vendor}/bin/toolchain", concat(sorted(glob.glob("/usr/bin/*")), 16 << 20))
    put(f"{vendor}/share/assets.pak", mixed(rng, lines, 12 << 20, 0.5))
    for k in range(200):
        put(f"{vendor}/etc/conf.d/{k:03d}.conf", text(rng, lines, rng.randrange(200, 4000)))
    # A modified file of layer 1 (copied up whole) and deletions (whiteouts).
    osfile = os.path.join(rootfs, "usr/lib/python3.11/os.py")
    if os.path.exists(osfile):
        with open(osfile, "ab") as f:
            f.write(b"# patched by layer 4\n")
    for rel in ("usr/share/zoneinfo/right", "usr/share/zoneinfo/posix"):
        path = os.path.join(rootfs, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            for dirpath, dirnames, filenames in os.walk(path, topdown=False):
                for n in filenames:
                    os.unlink(os.path.join(dirpath, n))
                for n in dirnames:
                    p = os.path.join(dirpath, n)
                    os.unlink(p) if os.path.islink(p) else os.rmdir(p)
            os.rmdir(path)

def describe(layout, tag):
    """stats.json: per-layer and total sizes and entry counts."""
    def blob(digest):
        return os.path.join(layout, "blobs", *digest.split(":"))
    index = json.load(open(os.path.join(layout, "index.json")))
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.load(open(blob(desc["digest"])))
    layers = []
    for layer in manifest["layers"]:
        path = blob(layer["digest"])
        counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "whiteouts": 0, "other": 0}
        raw = 0
        with open(path, "rb") as f:
            d = zlib.decompressobj(wbits=31)
            while chunk := f.read(1 << 20):
                raw += len(d.decompress(chunk))
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                name = os.path.basename(m.name.rstrip("/"))
                key = ("whiteouts" if name.startswith(".wh.") else "files" if m.isreg()
                       else "dirs" if m.isdir() else "symlinks" if m.issym()
                       else "hardlinks" if m.islnk() else "other")
                counts[key] += 1
        layers.append({"digest": layer["digest"], "compressed": layer["size"],
                       "uncompressed": raw, **counts,
                       "path": os.path.relpath(path, os.path.dirname(layout))})
    json.dump({"manifest": desc["digest"], "layers": layers}, sys.stdout, indent=1)

cmd = sys.argv[1]
if cmd == "select":
    select(int(sys.argv[2]), sys.argv[3:])
elif cmd == "app":
    generate_app(sys.argv[2])
elif cmd == "vendor":
    generate_vendor(sys.argv[2], sys.argv[3])
elif cmd == "describe":
    describe(sys.argv[2], sys.argv[3])
elif cmd == "check":  # exit 0 when every layer blob is in place, with its size
    cache = sys.argv[2]
    stats = json.load(open(os.path.join(cache, "stats.json")))
    for l in stats["layers"]:
        path = os.path.join(cache, l["path"])
        if not os.path.isfile(path) or os.path.getsize(path) != l["compressed"]:
            sys.exit(1)
elif cmd == "blobs":
    cache = sys.argv[2]
    for l in json.load(open(os.path.join(cache, "stats.json")))["layers"]:
        print(os.path.join(cache, l["path"]))
EOF
}

# copy_trees ROOTFS BUDGET_MIB SRC...: system files, sorted, up to the budget.
copy_trees() {
    local rootfs=$1 budget=$(($2 << 20))
    shift 2
    image_py select "$budget" "$@" \
        | tar --null --no-recursion -C / -cf - -T - \
        | tar -C "$rootfs" -xpf -
}

# repack LAYER_NOTE: give what this step created or changed (directories,
# generated files) a fixed mtime, then make a layer of the changes. Copied
# files keep their own, older mtimes. Same inputs, same layer digests.
repack() {
    find "$rootfs" -newer "$stamp" -exec touch -h -d @1704067200 {} +
    umoci repack --refresh-bundle --history.created_by "bench: $1" \
        --image "$oci:$IMAGE_TAG" "$bundle"
    touch "$stamp"
}

build_image() {
    local dest=$1 build=$BENCH_WORK/build triplet_libs dir
    local oci=$build/oci bundle=$build/bundle
    triplet_libs=/usr/lib
    for dir in /usr/lib/*-linux-gnu; do [ -d "$dir" ] && { triplet_libs=$dir; break; }; done
    bench_log "building the image into $dest (once; takes a minute or two)"
    rm -rf "$build"; mkdir -p "$build"
    umoci init --layout "$oci"
    umoci new --image "$oci:$IMAGE_TAG"
    umoci unpack --image "$oci:$IMAGE_TAG" "$bundle" >/dev/null
    local rootfs=$bundle/rootfs stamp=$build/stamp
    touch -d @1704067200 "$rootfs"
    touch "$stamp"

    copy_trees "$rootfs" 100 /usr/lib/python3.11 /usr/lib/python3 /usr/share/perl /usr/share/perl5
    repack "python and perl trees"
    copy_trees "$rootfs" 45 /usr/share/zoneinfo /usr/share/i18n /usr/share/man /usr/share/doc \
        /usr/share/locale
    repack "zoneinfo, i18n, man, doc"
    image_py app "$rootfs"
    repack "generated app tree"
    image_py vendor "$rootfs" "$triplet_libs"
    repack "binaries, a change, deletions"
    umoci gc --layout "$oci"
    rm -rf "$bundle"
    mkdir -p "$dest.new"
    mv "$oci" "$dest.new/oci"
    image_py describe "$dest.new/oci" "$IMAGE_TAG" > "$dest.new/stats.json.tmp"
    mv "$dest.new/stats.json.tmp" "$dest.new/stats.json"
    rm -rf "$dest"
    mv -T "$dest.new" "$dest"
}

CACHE=$BENCH_BASE/image-$IMAGE_VERSION
exec 9>"$BENCH_BASE/image.lock"
flock -w 3600 9 || bench_die "another run has been building the image for an hour"
if [ -f "$CACHE/stats.json" ] && image_py check "$CACHE"; then
    bench_log "using the cached image in $CACHE"
else
    rm -rf "$CACHE.new"
    for old in "$BENCH_BASE"/image-*; do   # caches of earlier compositions
        [ "$old" = "$CACHE" ] || [ ! -d "$old" ] || { bench_log "removing $old"; rm -rf "$old"; }
    done
    build_image "$CACHE"
    image_py check "$CACHE" || bench_die "image cache $CACHE is incomplete"
fi
flock -u 9

# --- registry and tool configuration ----------------------------------------

W=$BENCH_WORK
# Run as root, c/image (podman, skopeo) keeps its blob-info cache in
# /var/lib/containers/cache whatever the flags, and rootful podman creates
# /run/containers/networks: every podman and skopeo command gets empty
# private directories bound over those two in a mount namespace of its own
# (see BENCH_ISOLATE), so each run starts cold and the host is left alone.
bench_mountpoint /var/lib/containers 700
bench_mountpoint /run/containers 755
# isolated DIR: the BENCH_ISOLATE prefix with fresh directories under DIR.
isolated() {
    mkdir -p "$1/varlib" "$1/runc"
    ISOLATED=("${BENCH_ISOLATE[@]}" "$1/varlib:/var/lib/containers" "$1/runc:/run/containers" --)
}

bench_registry_start
REF=$BENCH_REGISTRY_HOST/bench/big:v1
bench_log "pushing to $REF"
isolated "$W/push"
timeout 300 "${ISOLATED[@]}" skopeo copy -q --preserve-digests --dest-tls-verify=false \
    "oci:$CACHE/oci:$IMAGE_TAG" "docker://$REF"

# podman and skopeo read only these files, never /etc's registries or storage
# settings, and podman's store, run and tmp dirs are all under $W.
bench_podman_config "$W"

RESULTS=$W/results.tsv
: > "$RESULTS"
SIZES=$W/sizes.txt

# note_size TOOL DIR: the first run records how much each tool stored.
note_size() {
    [ "$2" = 1 ] || return 0
    local mb
    mb=$(du -sxm --apparent-size "$3" 2>/dev/null | cut -f1) || true
    printf '%s\t%s\n' "$1" "${mb:-?}" >> "$SIZES"
}

run_pybox() {
    local run=$1 root=$W/roots/pybox.$1
    mkdir -p "$W/roots"
    bench_measure "$RESULTS" pybox "$run" -- "$PYBOX" --root "$root" pull -q "$REF" || true
    note_size pybox "$run" "$root"
    bench_rm_tree "$root"
}

run_podman() {
    local run=$1 dir=$W/roots/podman.$1 runroot=$W/pr$1
    mkdir -p "$runroot" "$dir/tmp" "$dir/net"
    isolated "$dir"
    # --tmpdir (libpod state), --network-config-dir (network locks) and
    # TMPDIR (blobs being copied, /var/tmp by default) keep the rest under $dir.
    TMPDIR=$dir/tmp bench_measure "$RESULTS" podman "$run" -- "${ISOLATED[@]}" \
        podman --root "$dir/root" --runroot "$runroot" --tmpdir "$dir/tmp" \
        --network-config-dir "$dir/net" --storage-driver overlay \
        pull -q --tls-verify=false "$REF" || true
    note_size podman "$run" "$dir/root"
    bench_rm_tree "$dir"
    bench_rm_tree "$runroot"
}

run_skopeo() {
    local run=$1 dir=$W/roots/skopeo.$1
    mkdir -p "$dir/tmp"
    isolated "$dir"
    TMPDIR=$dir/tmp bench_measure "$RESULTS" skopeo "$run" -- "${ISOLATED[@]}" \
        skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$dir/oci:img" || true
    note_size skopeo "$run" "$dir/oci"
    bench_rm_tree "$dir"
}

# --- serial gunzip, for context ----------------------------------------------

mapfile -t BLOBS < <(image_py blobs "$CACHE")
cat "${BLOBS[@]}" > /dev/null   # page cache, as for the registry's copy
t0=$(date +%s%N)
cat "${BLOBS[@]}" | gzip -dc > /dev/null
t1=$(date +%s%N)
GUNZIP=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')

# --- the runs ----------------------------------------------------------------

bench_sync
for ((run = 1; run <= RUNS; run++)); do
    order=()
    for ((k = 0; k < ${#TOOLS[@]}; k++)); do
        order+=("${TOOLS[(run - 1 + k) % ${#TOOLS[@]}]}")
    done
    bench_log "run $run/$RUNS: ${order[*]}"
    for tool in "${order[@]}"; do
        "run_$tool" "$run"
        bench_sync
    done
done

left=$(bench_mounts_under "$W")
[ -z "$left" ] || bench_die "mounts left behind under $W: $left"

# --- report ------------------------------------------------------------------

echo
"$BENCH_PY" -I - "$CACHE" "$REF" "$RUNS" "$SIZES" "$W/logs" <<'EOF'
import json, os, sys
cache, ref, runs, sizes, logs = sys.argv[1:]
stats = json.load(open(os.path.join(cache, "stats.json")))
mb = lambda n: f"{n / 1e6:.1f} MB"
L = stats["layers"]
print(f"image     {ref} ({len(L)} layers, gzip, built by umoci)")
rows = [("layer", "compressed", "uncompressed", "ratio", "files", "dirs", "links", "whiteouts")]
for i, l in enumerate(L, 1):
    rows.append((str(i), mb(l["compressed"]), mb(l["uncompressed"]),
                 f"{l['uncompressed'] / l['compressed']:.2f}", str(l["files"]), str(l["dirs"]),
                 str(l["symlinks"] + l["hardlinks"]), str(l["whiteouts"])))
tot = lambda k: sum(l[k] for l in L)
rows.append(("total", mb(tot("compressed")), mb(tot("uncompressed")),
             f"{tot('uncompressed') / tot('compressed'):.2f}", str(tot("files")), str(tot("dirs")),
             str(tot("symlinks") + tot("hardlinks")), str(tot("whiteouts"))))
w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for r in rows:
    print("  " + "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
print(f"entries   {sum(tot(k) for k in ('files', 'dirs', 'symlinks', 'hardlinks', 'whiteouts', 'other'))}"
      f" tar entries, {tot('files')} regular files")
print(f"runs      {runs} per tool, cold (fresh store each run), round-robin order")
manifest = json.load(open(os.path.join(cache, "oci/blobs", *stats["manifest"].split(":"))))
config = manifest["config"]["digest"].split(":")[1]
said = {}
for tool in ("pybox", "podman"):
    try:
        said[tool] = open(os.path.join(logs, f"{tool}.1.out")).read().split()[-1].split(":")[-1]
    except (OSError, IndexError):
        said[tool] = ""
agree = [t for t, v in said.items() if len(v) >= 12 and config.startswith(v)]
print(f"image ID  sha256:{config[:12]}…; printed by {', '.join(agree) or 'neither tool'} (run 1)"
      + "".join(f"; {t} printed {v!r}!" for t, v in said.items() if t not in agree))
try:
    stored = dict(line.split("\t", 1) for line in open(sizes).read().splitlines())
    print("stored    " + ", ".join(f"{t} {m} MB" for t, m in stored.items()) + " (first run, apparent size)")
except OSError:
    pass
EOF
echo "gunzip    $GUNZIP s  (serial 'cat blobs | gzip -dc > /dev/null', page cache warm, once)"
echo
bench_summary "$RESULTS" "${TOOLS[@]}" -- pybox/podman pybox/skopeo
echo
echo "versions  pybox $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "(worktree), $(podman --version), $(skopeo --version | cut -d' ' -f1-3)," \
    "$(nproc) CPUs"
echo "elapsed   $((SECONDS - START)) s for the whole benchmark"
