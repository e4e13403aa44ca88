"""What one hostile user costs the others: a real dashboard server, several browser
sessions uploading photographs while one uploads files built to hurt.

Starts `streamlit run app.py` on loopback (offline, SE-ResNet-50 with untrained weights
for everyone: the demo button), opens N+1 sessions in one headless Chromium (Debian's),
and for the duration:

- N sessions each upload R photographs, one at a time, each a new image (one pixel
  changed, so no cache answers): time from the upload to its charts drawn;
- one session uploads, in a loop: a 1 KB tuple-bomb checkpoint (2**60 objects when
  unfolded), a complex-valued checkpoint, a 100 MB checkpoint of another architecture
  (read in full by the worker), a 4 MB zip of four 1 GB members and a zip of a million
  entries on the Classes page, and records the message each got;
- a thread asks /_stcore/health every 0.2 s (timeout 5 s), another samples the memory
  of the server and its worker processes every 0.2 s.

Prints p50/p95 upload-to-charts, the health endpoint's worst and p99 answer times,
peak memory, and the hostile uploads' outcomes.

With ``--burst N``, instead: N sessions opened at once over bare WebSockets that never
read their sockets, a normal visitor 1, 3, 6 and 10 s later, the health endpoint
throughout, side by side on four servers: concurrent runs bounded (the default) or not
(``SEVIS_MAX_CONCURRENT_RUNS=0``), Streamlit's full garbage collection after every
script run on (Streamlit's default) or off (sevis's).

    python bench/load.py [--sessions 3] [--rounds 4]
    python bench/load.py --burst 40 [--variant "sevis's defaults"]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_e2e import CHART, CHROMIUM, CHROMIUM_FLAGS, start_streamlit  # noqa: E402
from test_hostile import deflated_zeros, many_entries, tuple_bomb, zip_checkpoint  # noqa: E402

MAX_SESSIONS = 8
EVENTS: list[tuple[float, str]] = []  # (perf_counter, what happened), for the slow answers
PHOTOS = [ROOT / "assets" / n for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]


POLLER = """
import sys, time, urllib.request
url, out = sys.argv[1], open(sys.argv[2], "w", buffering=1)
began = time.perf_counter()
while True:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as response:
            response.read()
        ok = 1
    except OSError:
        ok = 0
    out.write(f"{start - began:.3f} {time.perf_counter() - start:.4f} {ok}\\n")
    time.sleep(0.2)
"""


class Health:
    """Asks the health endpoint every 0.2 s (timeout 5 s) from a process of its own, so
    that this process's work (the browser driver) does not delay the asking."""

    def __init__(self, url: str, log: Path) -> None:
        self.log, self.began = log, time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-c", POLLER, url, str(log)])

    def finish(self) -> tuple[list[float], int, list[tuple[float, float]]]:
        """Answer times, failures, and (seconds since start, answer time) of those over 1 s."""
        self.process.terminate()
        self.process.wait(10)
        rows = [line.split() for line in self.log.read_text().splitlines() if len(line.split()) == 3]
        times = [float(r[1]) for r in rows]
        slow = [(float(r[0]), float(r[1])) for r in rows if float(r[1]) > 1]
        return times, sum(r[2] == "0" for r in rows), slow


class Memory(threading.Thread):
    """Samples the resident memory of a process and its descendants (the parsing workers)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mb, self.stop = pid, 0.0, threading.Event()

    def tree(self, pid: int) -> list[int]:
        pids = [pid]
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                pids += self.tree(int(child))
        return pids

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0.0
            for pid in self.tree(self.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
                total += int(line.split()[1]) / 1024
            self.peak_mb = max(self.peak_mb, total)
            self.stop.wait(0.2)


def new_photo(path: Path, seed: int) -> bytes:
    """The photograph with one pixel changed: a new image to every cache."""
    image = Image.open(path).convert("RGB")
    image.putpixel((seed % image.width, (seed // image.width) % image.height), (seed % 256, 0, 255 - seed % 256))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def settled(page, count: int, timeout: float = 300) -> None:
    """Exactly ``count`` charts, no stale element, no script running, three polls in a row."""
    deadline = time.monotonic() + timeout
    steady, last = 0, None
    while time.monotonic() < deadline:
        state = await page.evaluate(
            """([chart]) => [document.querySelectorAll(chart).length,
                document.querySelectorAll('[data-stale="true"]').length,
                document.querySelectorAll('[data-testid="stStatusWidget"]').length]""",
            [CHART],
        )
        steady = steady + 1 if state == last and state[1:] == [0, 0] else 0
        last = state
        if steady >= 3 and state[0] == count:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"charts, stale, running: {last}; expected {count} charts")


async def open_session(browser, url: str):
    context = await browser.new_context(viewport={"width": 1400, "height": 2000})
    page = await context.new_page()
    page.set_default_timeout(180_000)
    await page.goto(url)
    await page.get_by_text("The pretrained weights could not be fetched").wait_for()
    return page


async def normal_session(browser, url: str, index: int, rounds: int, times: list[float]) -> None:
    for r in range(rounds):
        # NOTE a fresh session per photograph: the uploader adds files to its list, and a
        # page showing one new photograph is what is timed
        page = await open_session(browser, url)
        await page.get_by_role("button", name="Untrained weights (a demo)").click()
        EVENTS.append((time.perf_counter(), f"session {index} opened"))
        await settled(page, 4)  # the sample photographs
        uploader = page.locator('[data-testid="stMain"] [data-testid="stFileUploaderDropzoneInput"]').first
        name = f"s{index}_r{r}.png"
        data = new_photo(PHOTOS[(index + r) % len(PHOTOS)], 1000 * index + r)
        start = time.perf_counter()
        await uploader.set_input_files({"name": name, "mimeType": "image/png", "buffer": data})
        await page.get_by_text(f"{name}: the 224×224 crop").wait_for()
        await settled(page, 4)
        times.append(time.perf_counter() - start)
        await page.context.close()


ZIP_SAYS = {"four_gb.zip": "for one file", "million.zip": "million.zip: "}  # how each answer is told apart


def hostile_files(folder: Path) -> dict[str, tuple[str, Path]]:
    """name -> (where it goes, the file: Playwright hands files over 50 MB by path)."""
    import timm

    other = folder / "resnet50.pth"
    torch.save(timm.create_model("resnet50").state_dict(), other)
    complex_state = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7, dtype=torch.complex64)}, complex_state)
    made = {
        "bomb.pth": ("checkpoint", zip_checkpoint(tuple_bomb(60))),
        "complex.pth": ("checkpoint", complex_state.getvalue()),
        "four_gb.zip": ("zip", deflated_zeros({f"cat/{i}.png": 1024**3 for i in range(4)})),
        "million.zip": ("zip", many_entries(1_000_000)),
    }
    for name, (_, data) in made.items():
        (folder / name).write_bytes(data)
    files = {name: (where, folder / name) for name, (where, _) in made.items()}
    return {**files, "resnet50.pth": ("checkpoint", other)}


async def hostile_session(browser, url: str, files: dict[str, tuple[str, Path]], done: asyncio.Event, seen: dict):
    """One user in two tabs: checkpoints in one (the model panel's upload), zips on the
    Classes page in the other (which needs a model: the demo weights)."""
    checkpoints = await open_session(browser, url)
    await checkpoints.get_by_role("button", name="Upload a checkpoint").click()
    sidebar_upload = checkpoints.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]')
    await sidebar_upload.wait_for(state="attached")
    zips = await open_session(browser, url)
    await zips.get_by_role("button", name="Untrained weights (a demo)").click()
    await settled(zips, 4)
    await zips.get_by_role("link", name="Classes").click()
    await zips.get_by_text("A .zip with one folder per class").click()
    zip_upload = zips.locator('[data-testid="stMain"] [data-testid="stFileUploaderDropzoneInput"]').first
    while not done.is_set():
        for name, (where, path) in files.items():
            start = time.perf_counter()
            EVENTS.append((start, f"{name} sent"))
            if where == "checkpoint":
                await sidebar_upload.set_input_files(path)
                alert = checkpoints.locator('[data-testid="stAlertContentError"]', has_text=name).first
            else:
                await zip_upload.set_input_files(path)
                alerts = zips.locator('[data-testid="stAlertContentError"], [data-testid="stAlertContentWarning"]')
                alert = alerts.filter(has_text=ZIP_SAYS[name]).first
            await alert.wait_for()
            seen.setdefault(name, (await alert.inner_text(), time.perf_counter() - start))
            EVENTS.append((time.perf_counter(), f"{name} answered"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def drive(url: str, sessions: int, rounds: int, files) -> tuple[list[float], dict]:
    from playwright.async_api import async_playwright

    times: list[float] = []
    seen: dict[str, tuple[str, float]] = {}
    done = asyncio.Event()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        hostile = asyncio.create_task(hostile_session(browser, url, files, done, seen) if files else asyncio.sleep(0))
        await asyncio.gather(*(normal_session(browser, url, i, rounds, times) for i in range(sessions)))
        done.set()
        try:
            await asyncio.wait_for(hostile, 300)
        except TimeoutError:
            hostile.cancel()
        await browser.close()
    return times, seen


# -- a burst of sessions that never read their sockets ---------------------------------


def raw_session(port: int, read: bool = False) -> socket.socket:
    """A Streamlit session over a bare WebSocket: the handshake, then the rerun request a
    browser sends on opening the page. Its receive buffer is tiny and, unless ``read``,
    nothing is ever read from it: what a client that stalls its socket costs."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    sock = socket.create_connection(("127.0.0.1", port), timeout=300)
    if not read:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: streamlit\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"no WebSocket: {head[:200]!r}")
    message = BackMsg()
    message.rerun_script.SetInParent()
    payload, mask = message.SerializeToString(), os.urandom(4)
    assert len(payload) < 126
    sock.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


def read_until_drawn(sock: socket.socket) -> tuple[float, float]:
    """Seconds to the first message of the server and to the end of the script run."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    start, first = time.perf_counter(), None
    buffer = b""

    def take(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the session")
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    while True:
        opcode, length = take(2)
        length &= 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", take(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", take(8))
        payload = take(length)
        first = first or time.perf_counter() - start
        if opcode & 0x0F != 2:
            continue
        message = ForwardMsg()
        message.ParseFromString(payload)
        if message.WhichOneof("type") == "script_finished":
            return first, time.perf_counter() - start


def open_stalled(port: int, into: list[socket.socket]) -> None:
    """One session that never reads, kept in ``into``."""
    into.append(raw_session(port))


BURST_VARIANTS = {  # name: the server's environment
    "Streamlit's defaults": {"SEVIS_MAX_CONCURRENT_RUNS": "0", "STREAMLIT_RUNNER_POST_SCRIPT_GC": "true"},
    "bounded, post-run GC": {"STREAMLIT_RUNNER_POST_SCRIPT_GC": "true"},
    "unbounded, no post-run GC": {"SEVIS_MAX_CONCURRENT_RUNS": "0"},
    "sevis's defaults": {},
}
VISITS = (1, 3, 6, 10)  # seconds after the burst began: a normal visitor opens the page


def burst(sessions: int, seconds: float, variants: list[str]) -> None:
    """Side by side, one server each, the variants of :data:`BURST_VARIANTS`: runs bounded
    (``SEVIS_MAX_CONCURRENT_RUNS`` unset: the machine's cores) or not (0), Streamlit's
    full garbage collection after every script run (``runner.postScriptGC``) on or off.
    ``sessions`` sessions open at once (one thread each) and never read; a normal visitor
    opens the page at each of :data:`VISITS` seconds and reads it; the health endpoint is
    asked every 0.2 s throughout; the server's memory is sampled. The default page is
    drawn for real: the weights folder holds an SE-ResNet-50 file (random weights in the
    SENet authors' layout), so every session analyses the sample photographs."""
    import timm
    from tiny import randomize_

    state = randomize_(timm.create_model("legacy_seresnet50"), seed=0).state_dict()
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for variant in variants:
        with tempfile.TemporaryDirectory(prefix="sevis-burst-") as folder:
            home = Path(folder)
            (home / "weights").mkdir()
            torch.save(weights, home / "weights" / "se_resnet50-ce0d4300.pth")
            env = {"SEVIS_DASHBOARD_MODELS": "SE-ResNet-50=se_resnet50", **BURST_VARIANTS[variant]}
            process, url = start_streamlit(home, **env)
            port = int(url.rsplit(":", 1)[1])
            stalled: list[socket.socket] = []
            visits: list[tuple[float, float]] = []
            try:
                read_until_drawn(raw_session(port, read=True))  # the models loaded once, as on a running server
                memory = Memory(process.pid)
                memory.start()
                time.sleep(0.5)
                before_mb = memory.peak_mb
                health = Health(url, home / "health.log")
                time.sleep(1)
                began = time.perf_counter()
                opener_args = (port, stalled)
                openers = [threading.Thread(target=open_stalled, args=opener_args) for _ in range(sessions)]
                for opener in openers:
                    opener.start()
                for opener in openers:
                    opener.join()
                opened = time.perf_counter() - began
                for at in VISITS:
                    time.sleep(max(0.0, began + at - time.perf_counter()))
                    visits.append(read_until_drawn(raw_session(port, read=True)))
                time.sleep(max(0.0, began + seconds - time.perf_counter()))
                answers, failures, slow = health.finish()
                memory.stop.set()
            finally:
                process.terminate()
                process.wait(30)
                for sock in stalled:
                    sock.close()
        firsts, drawn = [v[0] * 1000 for v in visits], [v[1] for v in visits]
        print(
            f"{variant:>26}: {len(stalled)} sessions opened at once in {opened:.1f} s, never read; "
            f"{len(visits)} visitors: first message max {max(firsts):.0f} ms, page drawn "
            f"{', '.join(f'{d:.2f}' for d in drawn)} s; health {len(answers)} asks, "
            f"p99 {percentile(answers, 0.99) * 1000:.0f} ms, worst {max(answers) * 1000:.0f} ms, "
            f"{len(slow)} over 1 s, {failures} failed; memory {before_mb:,.0f} -> peak {memory.peak_mb:,.0f} MB"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3, help=f"normal sessions, at most {MAX_SESSIONS}")
    parser.add_argument("--rounds", type=int, default=4, help="photographs each normal session uploads")
    parser.add_argument("--no-hostile", action="store_true", help="the normal sessions alone (a baseline)")
    parser.add_argument("--burst", type=int, metavar="N", help="instead: N sessions at once that never read")
    parser.add_argument("--seconds", type=float, default=30, help="how long the burst is watched")
    parser.add_argument(
        "--variant", action="append", choices=list(BURST_VARIANTS), help="with --burst: only these servers"
    )
    args = parser.parse_args(argv)
    if args.burst:
        burst(args.burst, args.seconds, args.variant or list(BURST_VARIANTS))
        return
    sessions = max(1, min(args.sessions, MAX_SESSIONS))
    with tempfile.TemporaryDirectory(prefix="sevis-load-") as folder:
        home = Path(folder)
        files = hostile_files(home)
        sizes = {name: path.stat().st_size / 1024**2 for name, (_, path) in files.items()}
        process, url = start_streamlit(
            home, SEVIS_UPLOAD_DIR=str(home / "uploads"), SEVIS_DASHBOARD_MODELS="SE-ResNet-50=se_resnet50"
        )
        health, memory = Health(url, home / "health.log"), Memory(process.pid)
        memory.start()
        start = time.perf_counter()
        try:
            times, seen = asyncio.run(drive(url, sessions, args.rounds, {} if args.no_hostile else files))
        finally:
            took = time.perf_counter() - start
            answers, failures, slow = health.finish()
            memory.stop.set()
            process.terminate()
            process.wait(30)
    print(f"{sessions} sessions x {args.rounds} photographs, 1 hostile session, {took:.0f} s in all, loopback")
    print(
        f"upload to charts: p50 {statistics.median(times):.1f} s, p95 {percentile(times, 0.95):.1f} s, "
        f"max {max(times):.1f} s ({len(times)} uploads)"
    )
    print(
        f"health endpoint: {len(answers)} asks, worst {max(answers) * 1000:.0f} ms, "
        f"p99 {percentile(answers, 0.99) * 1000:.0f} ms, {len(slow)} over 1 s, {failures} failed"
    )
    print(f"peak memory, server and workers: {memory.peak_mb:,.0f} MB")
    for name in files:
        text, seconds = seen.get(name, ("(not reached)", float("nan")))
        print(f"  {name} ({sizes[name]:,.1f} MB): {seconds:.1f} s, {' '.join(text.split())[:150]}")
    for at, seconds in slow:
        near = [f"{t - health.began:.0f} s {what}" for t, what in EVENTS if abs(t - health.began - at) < 5]
        print(f"  slow health answer at {at:.0f} s: {seconds:.1f} s; within 5 s: {', '.join(near)}")


if __name__ == "__main__":
    main()
