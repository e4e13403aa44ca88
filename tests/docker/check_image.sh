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
# A free port unless told: two checks on one machine (two CI jobs) never stop each other's server.
PORT=${SEVIS_DOCKER_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
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

# The stand-in is the same for every run on a machine: kept as a tar in CACHE, keyed by
# what makes it (packages, suite, mirror, host CA bundle), and made again only if gone.
CACHE=${SEVIS_DOCKER_CACHE:-/var/cache/sevis-docker}
PACKAGES=python3,python3-pip,python3-venv,ca-certificates
KEY=$(printf '%s\n' "$PACKAGES" bookworm "$MIRROR" "$(sha256sum /etc/ssl/certs/ca-certificates.crt)" | sha256sum | cut -c1-16)
BASE_TAR="$CACHE/base-$KEY.tar"
t0=$(date +%s)
if [ -s "$BASE_TAR" ]; then
    say "base stand-in from the cache ($BASE_TAR)"
else
say "making the base stand-in with debootstrap"
debootstrap --variant=minbase --include="$PACKAGES" \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
# What python:3.11-slim has that Debian's Python lacks: python and pip on PATH in
# /usr/local/bin, and pip allowed to install into the system site-packages.
ln -s /usr/bin/python3 "$WORK/rootfs/usr/local/bin/python"
ln -s /usr/bin/pip3 "$WORK/rootfs/usr/local/bin/pip"
rm -f "$WORK"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
# This network reaches PyPI through TLS interception: the stand-in trusts what the host
# trusts, as the machine's own pip does (pip reads /etc/pip.conf in any image).
cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$WORK/rootfs/etc/pip.conf"
rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
mkdir -p "$CACHE"
tar -C "$WORK/rootfs" -cf "$BASE_TAR.$$.tmp" . && mv "$BASE_TAR.$$.tmp" "$BASE_TAR"  # whole or absent, and two runs at once never write one file
rm -rf "$WORK/rootfs"
fi
ctr=$("${B[@]}" from scratch)
"${B[@]}" add "$ctr" "$BASE_TAR" / >/dev/null
"${B[@]}" config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
"${B[@]}" commit --quiet "$ctr" "$BASE" >/dev/null
"${B[@]}" rm "$ctr" >/dev/null
say "base stand-in ready in $(( $(date +%s) - t0 )) s"

say "building the Dockerfile (torch index: PyPI)"
t0=$(date +%s)
"${B[@]}" bud --isolation chroot --network host --format docker --pull=never \
    --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
BUILD_S=$(( $(date +%s) - t0 ))
"${B[@]}" inspect --type image "$IMAGE" >"$WORK/image.json"
"${B[@]}" images --json "$IMAGE" >"$WORK/images.json"
field() { python3 - "$WORK/image.json" "$1" <<'PY'
import json, sys
value = json.load(open(sys.argv[1]))["Docker"]["config"]
for key in sys.argv[2].split("."):
    value = (value or {}).get(key)
print(json.dumps(value) if not isinstance(value, str) else value)
PY
}
SIZE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["size"])' "$WORK/images.json")
say "built in ${BUILD_S} s; image size ${SIZE} (buildah's figure)"

[ "$(field User)" = "10001:10001" ] || { say "image user is $(field User), expected 10001:10001"; exit 1; }
field ExposedPorts | grep -q '8501/tcp' || { say "port 8501 not exposed"; exit 1; }
field Volumes | grep -q '/weights' || { say "no /weights volume"; exit 1; }
CMD=$(field Cmd)
HEALTH=$(field Healthcheck.Test)
[ "$HEALTH" != "null" ] || { say "no HEALTHCHECK in the image"; exit 1; }

say "starting the container: $CMD on port $PORT"
ctr=$("${B[@]}" from "$IMAGE")
say "uncompressed root filesystem: $(du -sxm "$("${B[@]}" mount "$ctr")" | cut -f1) MB"
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

# The server itself, not the `buildah run` that started it (which runs as root here).
SERVER=
for pid in $(pgrep -f "streamlit run app.py --server.port $PORT"); do
    [ "$(cat "/proc/$pid/comm")" != "buildah" ] && SERVER=$pid && break
done
[ -n "$SERVER" ] || { say "no streamlit process found"; exit 1; }
UIDS=$(awk '/^Uid:/ {print $2, $3}' "/proc/$SERVER/status")
[ "${UIDS%% *}" != "0" ] || { say "the server runs as root"; exit 1; }
say "server process $SERVER runs as uid ${UIDS%% *}, not root"

mapfile -t health < <(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); print("\n".join(t[1:]))' "$HEALTH")
probe=$("${B[@]}" from "$IMAGE")
"${B[@]}" run --isolation chroot --network host --env STREAMLIT_SERVER_PORT="$PORT" "$probe" -- "${health[@]}" \
    || { say "the image's HEALTHCHECK command failed"; exit 1; }
say "the image's HEALTHCHECK command succeeds"

# The page above is static; run the app script itself inside the image (offline: the
# default weights cannot be fetched, which the page must say without a traceback).
"${B[@]}" run --isolation chroot --network host "$probe" -- python -c '
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=300).run()
assert not at.exception, at.exception
at.sidebar.selectbox(key="se_resnet50_source").set_value("untrained").run()
assert not at.exception and not at.error, (at.exception, at.error)
charts = len(at.get("plotly_chart"))
assert charts == 3, charts  # top-5, SE profiles, overview (Grad-CAM when toggled on)
print("[docker-check] the app runs inside the image:", charts, "charts for the sample photographs")
' || { say "the app does not run inside the image"; exit 1; }
# Weights for an offline image, as README documents: `sevis weights fetch` on a connected
# machine fills a folder, which is mounted at /weights. No network here: the folder gets
# a checkpoint in the SENet layout made inside the image (random values, the real file's name).
WEIGHTS="$WORK/weights"
mkdir -p "$WEIGHTS" && chmod 777 "$WEIGHTS"
"${B[@]}" run --isolation chroot -v "$WEIGHTS:/weights" "$probe" -- python -c '
import timm, torch
torch.save(timm.create_model("legacy_seresnet50").state_dict(), "/weights/se_resnet50-ce0d4300.pth")
' || { say "could not write a checkpoint into the mounted folder"; exit 1; }
"${B[@]}" run --isolation chroot -v "$WEIGHTS:/weights:ro" "$probe" -- sevis weights list >"$WORK/list.txt" 2>&1
grep -q "se_resnet50: se_resnet50-ce0d4300.pth, .* MB, SHA-256 [0-9a-f]\{64\}" "$WORK/list.txt" \
    || { say "sevis weights list does not see the mounted file"; cat "$WORK/list.txt"; exit 1; }
"${B[@]}" run --isolation chroot -v "$WEIGHTS:/weights:ro" "$probe" -- python -c '
import sevis
model = sevis.load_model("se_resnet50")
assert model.sevis_info.weights == "/weights/se_resnet50-ce0d4300.pth", model.sevis_info.weights
print("[docker-check] the mounted weights folder is used:", model.sevis_info.weights)
' || { say "the mounted weights are not used"; exit 1; }
# The limits come from the environment (-e), and an isolated checkpoint read works as the
# image's unprivileged user, under the worker's memory and time limits.
"${B[@]}" run --isolation chroot -v "$WEIGHTS:/weights:ro" --env SEVIS_ZIP_MAX_FILES=7 "$probe" -- python -c '
import sevis
from sevis.limits import Limits
limits = Limits.from_env()
assert (limits.zip_files, limits.zip_member_bytes) == (7, 64 * 1024**2), limits
model = sevis.load_model("se_resnet50", "/weights/se_resnet50-ce0d4300.pth", isolate=True, check=False)
print("[docker-check] limits from the environment; isolated read:", model.sevis_info.weights_sha256[:12])
' || { say "the limits or the isolated checkpoint reader do not work in the image"; exit 1; }
say "OK: build ${BUILD_S} s, size ${SIZE}"
