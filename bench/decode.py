"""What decoding one image may cost the server: the worst files sevis accepts, and the
hostile ones it refuses, each decoded by ``sevis.decode_image`` in a fresh process.

For each file: seconds to decode (or to refuse), peak memory added (VmHWM over the
resident size before), and the longest gap of a thread that ticks every millisecond
meanwhile: decoding must leave the interpreter's lock to the server's other threads
(Pillow's decoders release it), so the gap stays near the tick however long a decode
takes.

    python bench/decode.py
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

MEASURE = r"""
import re, sys, threading, time
sys.path.insert(0, {root!r})
from sevis.data.images import decode_image
from sevis.errors import ImageError

def status(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read())[1]) * 1024

data = open(sys.argv[1], "rb").read()
decode_image(open(sys.argv[2], "rb").read())  # imports and a first decode done
gaps, stop = [0.0], threading.Event()

def tick():
    last = time.perf_counter()
    while not stop.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        gaps[0] = max(gaps[0], now - last)
        last = now

ticker = threading.Thread(target=tick)
ticker.start()
before = status("VmRSS")
start = time.perf_counter()
try:
    decode_image(data)
    said = "decoded"
except ImageError as err:
    said = "refused: " + str(err)[:90]
took = time.perf_counter() - start
stop.set()
ticker.join()
print(f"{{took:.2f}}|{{(status('VmHWM') - before) / 1024**2:.0f}}|{{gaps[0] * 1000:.0f}}|{{said}}")
"""


def encoded(image: Image.Image, format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    last = jpeg.rfind(b"\xff\xda")
    return jpeg[:-2] + jpeg[last:-2] * times + b"\xff\xd9"


def photograph(size: tuple[int, int]) -> Image.Image:
    return Image.open(ROOT / "assets" / "chelsea.png").convert("RGB").resize(size)


def cases() -> dict[str, bytes]:
    big = photograph((8000, 8000))
    progressive = encoded(big, "JPEG", quality=90, progressive=True)
    scans = progressive.count(b"\xff\xda")
    ramp = np.linspace(0, 1, 8000, dtype=np.float32)[None, :].repeat(8000, 0)
    grey = (ramp * 255).astype(np.uint8)
    small = encoded(photograph((640, 480)), "JPEG", quality=90, progressive=True)
    return {
        "64 MP JPEG, baseline": encoded(big, "JPEG", quality=90),
        f"64 MP JPEG, progressive, 12 scans (the most allowed; {scans} as saved)": repeat_last_scan(
            progressive, 12 - scans
        ),
        "64 MP PNG, RGBA": encoded(
            Image.fromarray(np.stack([grey, grey, grey, 255 - grey], -1), "RGBA"), "PNG", compress_level=1
        ),
        "64 MP PNG, 16-bit grey": encoded(Image.fromarray((ramp * 65535).astype(np.uint16)), "PNG", compress_level=1),
        "hostile: 640 x 480 progressive JPEG, last scan 3,000 times": repeat_last_scan(small, 3000),
        "hostile: 1 x 100,000 PNG": encoded(Image.new("L", (1, 100_000)), "PNG"),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sevis-decode-") as folder:
        small = Path(folder) / "small.png"
        photograph((320, 240)).save(small)
        print("file | MB | seconds | peak MB added | longest tick gap ms | outcome")
        for name, data in cases().items():
            path = Path(folder) / "image"
            path.write_bytes(data)
            script = MEASURE.format(root=str(ROOT))
            done = subprocess.run(
                [sys.executable, "-c", script, str(path), str(small)], capture_output=True, text=True, check=False
            )
            if done.returncode:
                print(f"{name} | failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            took, grown, gap, said = done.stdout.strip().split("|", 3)
            print(f"{name} | {len(data) / 1024**2:.1f} | {took} | {grown} | {gap} | {said}")


if __name__ == "__main__":
    main()
