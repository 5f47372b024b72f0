#!/bin/bash
# The README demo: a registry on loopback, a busybox image made by umoci and
# skopeo, then pybox pull -> images -> inspect -> image mount -> run -> build.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYBOX="$REPO/.venv/bin/pybox"
WORK="$(mktemp -d /tmp/pybox-demo.XXXXXX)"
REGISTRY_PID=""
MOUNTED=""

cleanup() {
    if [ -n "$MOUNTED" ]; then "$PYBOX" --root "$WORK/store" image umount "$MOUNTED" >/dev/null 2>&1 || true; fi
    if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$WORK/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $WORK/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')" 2>/dev/null; then break; fi
    sleep 0.1
done

echo "Making a busybox image with umoci and pushing it with skopeo to 127.0.0.1:$PORT ..."
umoci init --layout "$WORK/oci" >/dev/null
umoci new --image "$WORK/oci:busybox" >/dev/null
umoci unpack --image "$WORK/oci:busybox" "$WORK/bundle" >/dev/null
mkdir -p "$WORK/bundle/rootfs/bin" "$WORK/bundle/rootfs/etc"
cp /bin/busybox "$WORK/bundle/rootfs/bin/busybox"
for applet in sh ls cat echo id hostname; do ln -s busybox "$WORK/bundle/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/bundle/rootfs/etc/passwd"
umoci repack --image "$WORK/oci:busybox" "$WORK/bundle" >/dev/null
umoci config --image "$WORK/oci:busybox" --config.cmd /bin/sh --config.env PATH=/bin >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:busybox" "docker://127.0.0.1:$PORT/demo/busybox:latest"

export PYBOX_ROOT="$WORK/store"
step pybox pull "127.0.0.1:$PORT/demo/busybox"
"$PYBOX" pull "127.0.0.1:$PORT/demo/busybox"
step pybox images
"$PYBOX" images
step pybox inspect "127.0.0.1:$PORT/demo/busybox"
"$PYBOX" inspect "127.0.0.1:$PORT/demo/busybox"
step pybox image mount "127.0.0.1:$PORT/demo/busybox"
DIR="$("$PYBOX" image mount "127.0.0.1:$PORT/demo/busybox")"
MOUNTED="127.0.0.1:$PORT/demo/busybox"
echo "$DIR"
step ls -l "$DIR/bin"
ls -l "$DIR/bin"
step pybox image umount "127.0.0.1:$PORT/demo/busybox"
"$PYBOX" image umount "127.0.0.1:$PORT/demo/busybox"
MOUNTED=""
step pybox run --rm "127.0.0.1:$PORT/demo/busybox" sh -c 'echo "hello from $(hostname), pid $$"; id; ls /'
"$PYBOX" run --rm "127.0.0.1:$PORT/demo/busybox" sh -c 'echo "hello from $(hostname), pid $$"; id; ls /'
step pybox run --rm --memory 32m "127.0.0.1:$PORT/demo/busybox" cat /sys/fs/cgroup/memory/memory.limit_in_bytes
"$PYBOX" run --rm --memory 32m "127.0.0.1:$PORT/demo/busybox" cat /sys/fs/cgroup/memory/memory.limit_in_bytes
step pybox system df
"$PYBOX" system df
WEB="$REPO/Containerfiles/web"
step pybox build --build-arg BASE="127.0.0.1:$PORT/demo/busybox" -t demo/web "$WEB"
"$PYBOX" build --build-arg BASE="127.0.0.1:$PORT/demo/busybox" -t demo/web "$WEB"
step pybox history demo/web
"$PYBOX" history demo/web
# The container has its own network namespace: the server and the client both use its loopback.
step pybox run --rm demo/web sh -c "httpd -p 127.0.0.1:8080 -h /srv/www; sleep 0.3; wget -qO- http://127.0.0.1:8080/"
"$PYBOX" run --rm demo/web sh -c "httpd -p 127.0.0.1:8080 -h /srv/www; sleep 0.3; wget -qO- http://127.0.0.1:8080/"
