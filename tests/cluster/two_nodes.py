"""A real two-node Ray cluster on this machine, as `ray start` builds one across machines: a head
and a second node joined to it by address, each a `ray start --block` process of its own (its
own temp dir, its own ports, one CPU), with token authentication on (a random token in the
environment of both nodes and of every driver). Nodes are stopped through the processes this
helper started, by their ids: SIGTERM to the `ray start --block` process and every process
below it, then SIGKILL to whatever is left; nothing else on the machine is touched (no `ray
stop`, which would stop every Ray of the user).

    with TwoNodes() as c:                  # waits until both nodes are alive
        c.address                          # 127.0.0.1:PORT for --ray
        c.env                              # environment for a driver (spvit ... --ray ADDRESS)
        c.kill_worker_node()               # SIGKILL the second node's raylet (its node dies)
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 90          # seconds for a node to come up
STOP_TIMEOUT = 20


def free_ports(n: int) -> list[int]:
    """n distinct ports nothing listens on now (the OS's choice; a small race is possible)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class TwoNodes:
    """root: where the nodes' temp dirs and logs go (default: a new short directory under /tmp,
    removed at the end; Ray's socket paths must stay under 108 bytes)."""

    def __init__(self, root: Path | None = None, cpus: int = 1):
        self.own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="ray2-")) if root is None else Path(root)
        self.cpus = cpus
        self.ray = str(Path(sys.executable).parent / "ray")
        token = secrets.token_hex(32)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.procs: list[subprocess.Popen] = []
        self.address = ""

    def _start(self, name: str, extra: list[str]) -> subprocess.Popen:
        temp = self.root / name
        temp.mkdir(parents=True, exist_ok=True)
        (node_manager, object_manager, agent_listen, agent_grpc, env_agent, metrics) = free_ports(6)
        cmd = [self.ray, "start", "--block", "--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
               "--temp-dir", str(temp), "--node-manager-port", str(node_manager),
               "--object-manager-port", str(object_manager), "--dashboard-agent-listen-port", str(agent_listen),
               "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(env_agent),
               "--metrics-export-port", str(metrics), "--disable-usage-stats", *extra]
        log = open(self.root / f"{name}.log", "w")
        p = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def nodes_alive(self) -> int:
        """Alive nodes as the cluster's GCS sees them (`ray status` needs the dashboard); -1
        while nothing listens at the head's port."""
        host, port = self.address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError:
            return -1
        out = subprocess.run([sys.executable, "-c", _COUNT_NODES, self.address], env=self.env, capture_output=True,
                             text=True, timeout=60)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else -1

    def __enter__(self) -> "TwoNodes":
        try:
            gcs = free_ports(1)[0]
            self.address = f"127.0.0.1:{gcs}"
            self.head = self._start("head", ["--head", "--port", str(gcs), "--include-dashboard=false"])
            self._wait(1)
            self.worker = self._start("worker", ["--address", self.address])
            self._wait(2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self, n: int) -> None:
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a ray start process exited: " + self._log_tails())
            try:
                if self.nodes_alive() >= n:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(1)
        raise TimeoutError(f"{n} Ray node(s) not up after {START_TIMEOUT} s: " + self._log_tails())

    def _log_tails(self) -> str:
        return "\n".join(f"--- {f.name}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-8:])
                         for f in sorted(self.root.glob("*.log")))

    def kill_worker_node(self) -> None:
        """SIGKILL the second node's raylet: its `ray start --block` kills the node's other
        processes and exits; the head sees the node die."""
        raylets = [q for q in descendants(self.worker.pid) if _name(q) == "raylet"]
        if not raylets:
            raise RuntimeError("no raylet below the second node's ray start process")
        os.kill(raylets[0], signal.SIGKILL)

    def stop(self) -> None:
        for p in reversed(self.procs):                  # the worker node first, then the head
            _stop_tree(p)
        self.procs.clear()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)


def _stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/PID/stat (state, ppid, ..., starttime at index 19), [] if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st:
                parent[int(d.name)] = int(st[1])
    out, frontier = [], {pid}
    while frontier:
        kids = [q for q, pp in parent.items() if pp in frontier]
        out += kids
        frontier = set(kids)
    return out


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _stop_tree(p: subprocess.Popen) -> None:
    """SIGTERM to the ray start process and every process below it; SIGKILL to those still
    running after STOP_TIMEOUT (the same processes: pid and start time)."""
    tree = {q: _stat(q)[19] for q in [p.pid] + descendants(p.pid) if len(_stat(q)) > 19}

    def running():
        p.poll()                                          # reap our own child
        return [q for q, start in tree.items() if (st := _stat(q)) and st[0] not in "ZX" and st[19] == start]
    for q in running():
        os.kill(q, signal.SIGTERM)
    deadline = time.time() + STOP_TIMEOUT
    while running() and time.time() < deadline:
        time.sleep(0.2)
    for q in running():
        os.kill(q, signal.SIGKILL)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


_COUNT_NODES = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
"""
