#!/usr/bin/env bash
# Build the real Dockerfile, start the image, check it, remove everything it made.
#
# No Docker engine runs on the CI machines; Debian's buildah does (vfs storage, chroot
# isolation, host network). No base-image registry is reachable either, so a stand-in
# for the Dockerfile's base (Debian bookworm with its Python 3.11, the same Python as
# python:3.11-slim-bookworm) is made with debootstrap and tagged with the base's name.
# The torch index is switched to PyPI, the one reachable here.
#
# Prints: build time, image size, time from container start to healthy.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /var/tmp/sevis-docker.XXXXXX)
PORT=${SEVIS_DOCKER_PORT:-18501}
BASE=docker.io/library/python:3.11-slim-bookworm
IMAGE=localhost/sevis:check
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
B=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
SERVER_PID=

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        pkill -TERM -P "$SERVER_PID" 2>/dev/null || true
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    pkill -TERM -f "streamlit run app.py --server.port $PORT" 2>/dev/null || true
    "${B[@]}" rm --all >/dev/null 2>&1 || true
    "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '[docker-check] %s\n' "$*"; }

say "making the base stand-in with debootstrap"
t0=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
# What python:3.11-slim has that Debian's Python lacks: python and pip on PATH in
# /usr/local/bin, and pip allowed to install into the system site-packages.
ln -s /usr/bin/python3 "$WORK/rootfs/usr/local/bin/python"
ln -s /usr/bin/pip3 "$WORK/rootfs/usr/local/bin/pip"
rm -f "$WORK"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
rm -rf "$WORK/rootfs"
ctr=$("${B[@]}" from scratch)
"${B[@]}" add "$ctr" "$WORK/rootfs.tar" / >/dev/null
"${B[@]}" config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
"${B[@]}" commit --quiet "$ctr" "$BASE" >/dev/null
"${B[@]}" rm "$ctr" >/dev/null
rm -f "$WORK/rootfs.tar"
say "base stand-in ready in $(( $(date +%s) - t0 )) s"

say "building the Dockerfile (torch index: PyPI)"
t0=$(date +%s)
"${B[@]}" bud --isolation chroot --network host --format docker --pull=never \
    --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
BUILD_S=$(( $(date +%s) - t0 ))
SIZE=$("${B[@]}" inspect --type image --format '{{.Docker.Size}}' "$IMAGE" 2>/dev/null || echo 0)
if [ "$SIZE" = "0" ] || [ -z "$SIZE" ]; then
    SIZE=$("${B[@]}" images --json "$IMAGE" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["size"])')
fi
say "built in ${BUILD_S} s; image size $(( SIZE / 1024 / 1024 )) MB"

inspect() { "${B[@]}" inspect --type image --format "$1" "$IMAGE"; }
USER_NAME=$(inspect '{{.Docker.Config.User}}')
[ "$USER_NAME" = "10001:10001" ] || { say "image user is $USER_NAME, expected 10001:10001"; exit 1; }
inspect '{{json .Docker.Config.ExposedPorts}}' | grep -q '8501/tcp' || { say "port 8501 not exposed"; exit 1; }
inspect '{{json .Docker.Config.Volumes}}' | grep -q '/weights' || { say "no /weights volume"; exit 1; }
CMD=$(inspect '{{json .Docker.Config.Cmd}}')
HEALTH=$(inspect '{{json .Docker.Config.Healthcheck.Test}}')
[ "$HEALTH" != "null" ] && [ -n "$HEALTH" ] || { say "no HEALTHCHECK in the image"; exit 1; }

say "starting the container: $CMD on port $PORT"
ctr=$("${B[@]}" from "$IMAGE")
mapfile -t cmd < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$CMD")
t0=$(date +%s.%N)
"${B[@]}" run --isolation chroot --network host --env STREAMLIT_SERVER_PORT="$PORT" \
    "$ctr" -- "${cmd[@]}" --server.port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
healthy=
for _ in $(seq 1 240); do
    if python3 - "$PORT" <<'PY' 2>/dev/null; then healthy=1; break; fi
import sys, urllib.request
sys.exit(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_stcore/health", timeout=2).read() != b"ok")
PY
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.5
done
[ -n "$healthy" ] || { say "never healthy"; tail -30 "$WORK/server.log"; exit 1; }
say "healthy $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s after start"

python3 - "$PORT" <<'PY'
import sys, urllib.request
page = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=10).read().decode()
assert "<noscript>" in page and "streamlit" in page.lower(), page[:300]
print("[docker-check] page served")
PY

SERVER=$(pgrep -f "streamlit run app.py --server.port $PORT" | head -1)
[ -n "$SERVER" ] || { say "no streamlit process found"; exit 1; }
UIDS=$(awk '/^Uid:/ {print $2, $3}' "/proc/$SERVER/status")
[ "${UIDS%% *}" != "0" ] || { say "the server runs as root"; exit 1; }
say "server process $SERVER runs as uid ${UIDS%% *}, not root"

mapfile -t health < <(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); print("\n".join(t[1:]))' "$HEALTH")
probe=$("${B[@]}" from "$IMAGE")
"${B[@]}" run --isolation chroot --network host --env STREAMLIT_SERVER_PORT="$PORT" "$probe" -- "${health[@]}" \
    || { say "the image's HEALTHCHECK command failed"; exit 1; }
say "the image's HEALTHCHECK command succeeds"
say "OK: build ${BUILD_S} s, size $(( SIZE / 1024 / 1024 )) MB"
