"""`--ray ADDRESS` on a real two-node Ray cluster on this machine (tests/cluster/two_nodes.py: a
head and a second node joined by address, one CPU each, own temp dirs and ports, token
authentication). `spvit` runs as a separate driver process, as a user runs it against a
cluster: a sharded `spvit compare` gives the local run's JSON byte for byte and its table line
for line, with shards run on the second node (the job's code arrived there); a small `spvit
regress` gives the local run's results; with the second node killed (its raylet, SIGKILL)
while it runs a shard, Ray reruns the lost shards on the head and the report is still the
local one byte for byte. Every subprocess has a timeout and the cluster always comes down.
The compare part is in `make test`; regress and the killed node are SPVIT_SLOW=1 (docs/cluster.md
has the wall times)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from base import ROOT, settings
from quant import DEMO_CHECKPOINT
from tests.cluster.two_nodes import TwoNodes, _name, descendants

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[cluster]'")

RUN_TIMEOUT = 900
COMPARE = ["--data", "digits:test", "--batch", "8", "--sqnr-images", "16", "--no-progress"]
REGRESS = ["regress", "--configs", "2", "--per-hw", "2", "--images", "2", "--seed", "3", "--x-seeds", "2",
           "--no-progress"]
slow = pytest.mark.skipif(not settings.SLOW, reason="SPVIT_SLOW=1: regress and a killed node on the cluster")


def spvit(args, env=None, timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """`spvit ARGS` as its own process (the driver), from the repository root."""
    env = dict(env or __import__("os").environ, SPVIT_BUILD=str(settings.BUILD.resolve()))
    return subprocess.run([sys.executable, "-m", "spvit.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def compare(package, out, limit: int, cluster=None) -> tuple[bytes, list[str]]:
    """`spvit compare` of the demo model on `limit` digits: the JSON and the printed table."""
    r = spvit(["compare", "--checkpoint", str(DEMO_CHECKPOINT), "--package", str(package), *COMPARE,
               "--limit", str(limit), "--json", str(out)] + (["--ray", cluster.address] if cluster else []),
              cluster.env if cluster else None)
    assert r.returncode == 0, r.stderr[-3000:]
    table = [ln for ln in r.stdout.splitlines() if not ln.startswith(("checkpoint ", "wrote "))]
    return out.read_bytes(), table


@pytest.fixture(scope="module")
def cluster():
    t0 = time.time()
    with TwoNodes() as c:
        c.up_s = time.time() - t0
        yield c


def _job_code_on_worker_node(c) -> bool:
    """The job's runtime environment (our packages as py_modules) was set up on the second node:
    a task of the job ran there."""
    return any((c.root / "worker").glob("session_*/runtime_resources/py_modules_files/*"))


def test_sharded_compare_on_two_nodes(cluster, demo_package, tmp_path, measured):
    t0 = time.time()
    local = compare(demo_package, tmp_path / "local.json", 64)
    t1 = time.time()
    on_ray = compare(demo_package, tmp_path / "ray.json", 64, cluster)
    t2 = time.time()
    assert on_ray[0] == local[0] and on_ray[1] == local[1]
    assert json.loads(local[0])["images"] == 64
    assert cluster.nodes_alive() == 2 and _job_code_on_worker_node(cluster), "no shard ran on the second node"
    measured(f"spvit compare --ray on a two-node Ray cluster (head + one node, 1 CPU each): JSON byte-identical to "
             f"--workers 1 (64 digits in shards of whole batches); cluster up {cluster.up_s:.0f} s, "
             f"compare local {t1 - t0:.0f} s, "
             f"on the cluster {t2 - t1:.0f} s (driver start, code shipped to both nodes)")


def _strip_wall(js: dict) -> dict:
    s = {k: v for k, v in js["summary"].items() if k not in ("wall_s", "executor")}
    return {"summary": s, "results": [{k: v for k, v in r.items() if k != "wall_s"} for r in js["results"]]}


@slow
def test_regress_on_two_nodes(cluster, tmp_path, measured):
    t0 = time.time()
    r = spvit([*REGRESS, "--workers", "1", "--json", str(tmp_path / "local.json")])
    assert r.returncode == 0, r.stderr[-3000:]
    t1 = time.time()
    r = spvit([*REGRESS, "--ray", cluster.address, "--json", str(tmp_path / "ray.json")], cluster.env)
    assert r.returncode == 0, r.stderr[-3000:]
    t2 = time.time()
    local, on_ray = (json.loads((tmp_path / f).read_text()) for f in ("local.json", "ray.json"))
    assert _strip_wall(on_ray) == _strip_wall(local) and on_ray["summary"]["mismatches"] == 0
    assert on_ray["summary"]["executor"] == f"Ray ({cluster.address})"
    measured(f"spvit regress --ray on the two-node cluster: results equal to --workers 1 (all but wall times), "
             f"{local['summary']['elements_compared']:,} elements, 0 mismatches; local {t1 - t0:.0f} s, "
             f"cluster {t2 - t1:.0f} s")


def _task_running_on_worker_node(c) -> bool:
    """A core worker of the second node runs a task (its process title is ray::<function>)."""
    idle = ("ray::IDLE", "ray::DashboardA", "ray::RuntimeEnv")
    return any(n.startswith("ray::") and n not in idle for n in map(_name, descendants(c.worker.pid)))


@slow
def test_worker_node_killed_mid_run(cluster, demo_package, tmp_path, measured):
    """Last in this module: the second node does not come back."""
    local = compare(demo_package, tmp_path / "local.json", 160)
    out = tmp_path / "ray.json"
    t0 = time.time()
    driver = subprocess.Popen([sys.executable, "-m", "spvit.cli", "compare", "--checkpoint", str(DEMO_CHECKPOINT),
                               "--package", str(demo_package), *COMPARE, "--limit", "160", "--json", str(out),
                               "--ray", cluster.address], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(cluster.env, SPVIT_BUILD=str(settings.BUILD.resolve())))
    try:
        deadline = time.time() + 300
        while not _task_running_on_worker_node(cluster):
            assert driver.poll() is None, "the run ended before a shard ran on the second node"
            assert time.time() < deadline, "no shard started on the second node within 300 s"
            time.sleep(0.2)
        killed = time.time() - t0
        cluster.kill_worker_node()
        stdout, stderr = driver.communicate(timeout=RUN_TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, stderr[-3000:]
    assert out.read_bytes() == local[0]
    lines = iter(stdout.splitlines())          # the local table in order (Ray adds its note on the dead raylet)
    assert all(any(ln == want for ln in lines) for want in local[1]), stdout
    assert "Raylet is terminated" in stdout
    deadline = time.time() + 120                 # the head marks the node dead after its health checks fail
    while cluster.nodes_alive() != 1:
        assert time.time() < deadline, "the killed node is still alive for the head"
        time.sleep(1)
    measured(f"two-node cluster, second node killed (raylet SIGKILL) {killed:.0f} s into a sharded compare while it "
             f"ran a shard: Ray reran the lost shards on the head, JSON byte-identical to --workers 1 (160 digits); "
             f"run {time.time() - t0:.0f} s")
