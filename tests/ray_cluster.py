"""A Ray cluster of several nodes on this machine, every one on 127.0.0.1, running
`sevis extract --engine ray` against it; used by ``test_ray_engine.py`` and
``bench/ray_cluster.py``.

Run it inside a private network namespace, ``unshare -n python tests/ray_cluster.py
SPEC.json``: there loopback is the only address there is, so Ray keeps 127.0.0.1 for every
node. (Outside one, Ray 2.60 replaces 127.0.0.1 with the machine's network address in
``ray start --node-ip-address`` and ``ray.init(_node_ip_address=...)``, and its single-machine
switch, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, makes ``ray start --address`` refuse worker
nodes.)

The spec (JSON) names ``root`` (the checkout), ``weights``, ``data``, ``out``, ``temp`` (a
short folder of its own: Ray's socket paths must stay under 108 characters), ``port``,
``nodes`` (worker nodes, ``cpus`` each; the head runs no work), ``batch_size``, ``workers``
(actors), and ``kill_after`` (parts adopted before one worker node that holds an actor is
killed, or null: no kill). Steps: start the head and the worker nodes; run the extraction
in a driver process; with ``kill_after``, SIGKILL that node's processes once the parts
folder holds ``kill_after`` parts, give the driver ``grace`` seconds to finish on what is
left, kill it if it has not, and run the same extraction again with ``resume=True``. It
writes ``result`` (JSON): each node's address, which node was killed and what its actors
were, the parts at the kill, each driver's exit status and seconds. Every process it started
is killed at the end, found by the cluster's own temporary folder and by the network
namespace they share.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

DRIVER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sys.path[:0] = [{root!r}]
from sevis.jobs.ray_engine import extract_ray
start = time.perf_counter()
extract_ray("se_resnet50", {weights!r}, {data!r}, {out!r}, batch_size={batch_size}, workers={workers},
            resume={resume}, address="127.0.0.1:{port}")
print(f"extracted in {{time.perf_counter() - start:.2f}} s", file=sys.stderr, flush=True)
"""


def loopback_up() -> None:
    """Bring up this namespace's loopback interface (a new network namespace's is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def ray(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("ray")), *args]


def kill_tree(marker: str) -> None:
    """SIGKILL every process whose command line holds ``marker`` (the cluster's temporary
    folder or a node's port): Ray's processes leave their starter's process group."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def kill_namespace() -> None:
    """SIGKILL every other process of this network namespace: all the cluster's, those
    that renamed themselves too (Ray's agents become `ray::DashboardAgent`, so no marker
    in their command line finds them, and they outlive their node)."""
    own = os.readlink("/proc/self/ns/net")
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != own:
                continue
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def worker_node(head: int, node_port: int, cpus: int, env: dict[str, str], temp: str, log: Path) -> subprocess.Popen:
    """`ray start --block` of a worker node joining the head on port ``head``, its node
    manager on ``node_port`` (how the cluster tells its nodes apart: one address for all),
    its sockets and logs under ``temp``/``node_port``; what it prints goes to ``log``."""
    args = ["--address", f"127.0.0.1:{head}", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus)]
    # NOTE a temporary folder of its own: nodes sharing one pick their socket and log names by
    # looking for a free one (plasma_store, plasma_store.1, ...), a race when they start at once
    args += ["--temp-dir", f"{temp}/{node_port}"]
    args += ["--node-manager-port", str(node_port), "--object-manager-port", str(node_port + 1)]
    # NOTE nodes on one address must not share a port: each one's agents and workers get
    # their own (their defaults are fixed, 52365 and up, or drawn from one range)
    args += ["--dashboard-agent-listen-port", str(node_port + 2), "--dashboard-agent-grpc-port", str(node_port + 3)]
    args += ["--metrics-export-port", str(node_port + 4), "--runtime-env-agent-port", str(node_port + 5)]
    first_worker = 20000 + (node_port - 6000) * 20
    args += ["--min-worker-port", str(first_worker), "--max-worker-port", str(first_worker + 199)]
    return subprocess.Popen(
        ray("start", *args, "--block", "--disable-usage-stats"),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def parts(out: Path) -> int:
    return len(list(out.with_name(out.name + ".parts").glob("part-*.parquet")))


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    loopback_up()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["PYTHONPATH"] = os.pathsep.join([spec["root"], env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # NOTE explicit: `ray start` turns token authentication on when a token file exists
    # (~/.ray/auth_token, left by any local ray.init), a driver given an address does not.
    env["RAY_AUTH_MODE"] = "disabled"
    temp, port, out = spec["temp"], spec["port"], Path(spec["out"])
    result: dict = {"drivers": []}
    try:
        subprocess.run(
            ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "0",
                "--include-dashboard", "false", "--temp-dir", temp, "--disable-usage-stats"),
            env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        node_ports = [port + 100 + 10 * i for i in range(spec["nodes"])]
        logs = Path(spec["result"]).parent
        nodes = [worker_node(port, p, spec["cpus"], env, temp, logs / f"node-{p}.log") for p in node_ports]
        import ray as ray_api

        ray_api.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        deadline = time.monotonic() + 300
        while sum(n["Alive"] for n in ray_api.nodes()) < 1 + len(nodes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker nodes did not join: {ray_api.nodes()}")
            time.sleep(0.5)
        result["addresses"] = sorted({n["NodeManagerAddress"] for n in ray_api.nodes()})
        result["nodes"] = len(ray_api.nodes())

        def drive(resume: bool) -> subprocess.Popen:
            script = DRIVER.format(resume=resume, **spec)
            return subprocess.Popen(
                [sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
            )

        start = time.perf_counter()
        first = drive(resume=False)
        if spec["kill_after"] is not None:
            while parts(out) < spec["kill_after"] and first.poll() is None:
                time.sleep(0.05)
            result["parts_at_kill"] = parts(out)
            by_port = {n["NodeID"]: n["NodeManagerPort"] for n in ray_api.nodes()}
            actors = [
                a for a in ray_api._private.state.actors().values()
                if a["State"] == "ALIVE" and "MapWorker" in a["ActorClassName"]  # Ray Data's actor around _Extractor
            ]  # fmt: skip
            held = [by_port.get(a["Address"]["NodeID"]) for a in actors]
            result["actors_on"] = sorted(p for p in held if p is not None)
            victim = next((p for p in node_ports if p in held), node_ports[0])
            result["killed"] = victim
            os.killpg(nodes[node_ports.index(victim)].pid, signal.SIGKILL)
            kill_tree(f"--node_manager_port={victim}")
            try:
                first.wait(timeout=spec["grace"])
            except subprocess.TimeoutExpired:
                os.killpg(first.pid, signal.SIGKILL)
            result["drivers"].append(
                {"rc": first.wait(), "seconds": time.perf_counter() - start, "stderr": first.stderr.read()[-3000:]}
            )
            deadline = time.monotonic() + 180  # the head marks a node dead once its heartbeats stop
            while sum(n["Alive"] for n in ray_api.nodes()) > len(nodes) and time.monotonic() < deadline:
                time.sleep(0.5)
            result["alive_after_kill"] = sum(n["Alive"] for n in ray_api.nodes())
            start = time.perf_counter()
            first = drive(resume=True)
        try:
            rc = first.wait(timeout=spec.get("timeout", 900))
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, signal.SIGKILL)
            rc = first.wait()
        result["drivers"].append(
            {"rc": rc, "seconds": time.perf_counter() - start, "stderr": first.stderr.read()[-3000:]}
        )
        ray_api.shutdown()
    finally:
        kill_tree(temp)
        for node_port in [port + 100 + 10 * i for i in range(spec["nodes"])]:
            kill_tree(f"--node_manager_port={node_port}")
        kill_tree(f"--gcs_server_port={port}")
        kill_namespace()
        Path(spec["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
