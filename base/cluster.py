"""One place that runs a list of independent tasks: in this process, in a local process pool,
or on Ray (a local Ray, or a cluster joined by address). Results come back in task order,
never in completion order, so every merge downstream is deterministic.

    ex = Executor.from_args(args)                  # --workers N, --ray [ADDRESS], RAY_ADDRESS
    results = ex.map(module_level_fn, tasks, desc="shards")

`fn` must be a module-level function (workers import it by name) and tasks and results must
pickle. A task whose worker process dies (killed, out of memory, a crashed simulator) is run
again, up to `retries` times; an exception raised by the task itself is not retried: it stops
the run and is re-raised here (a UsageError keeps its class, so the CLI exits 2 with it).

Local pool: `workers` spawned processes; each is sent one task at a time, so a lost worker
costs exactly the task it was running (the others go on). Ray: `ray.remote(fn)` with
max_retries (Ray re-runs tasks whose worker or node died). docs/cluster.md has the set-up.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import socket
import sys
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait

from . import ROOT, settings
from .errors import UsageError

PACKAGES = ("base", "golden", "quant", "rtl_gen", "sim", "spvit")   # what Ray ships to its workers
RAY_INSTALL = "pip install 'spvit-accel[cluster]' (or: pip install ray)"
MODES = ("inline", "local", "ray")


class TaskFailed(RuntimeError):
    """A task raised an exception that cannot travel back as itself, or lost its worker too often."""


@dataclass(frozen=True)
class Executor:
    """mode: inline (this process), local (a pool of `workers` processes) or ray; address: the
    Ray cluster to join (None: RAY_ADDRESS, else start a local Ray with `workers` CPUs, 0 = all)."""
    mode: str = "inline"
    workers: int = 1
    address: str | None = None
    retries: int = 2
    progress: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"executor mode must be one of {MODES} (got {self.mode!r})")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise UsageError(f"--workers must be a non-negative integer (got {self.workers!r})")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise UsageError(f"--retries must be a non-negative integer (got {self.retries!r})")

    @classmethod
    def from_args(cls, args, default_workers: int | None = None) -> "Executor":
        """From the options of `add_arguments`: --ray [ADDRESS] selects Ray, else --workers
        (default `default_workers`, else settings.THREADS) processes, 1 = in this process."""
        ray = getattr(args, "ray", None)
        workers = getattr(args, "workers", None)
        retries = getattr(args, "retries", None)
        retries = 2 if retries is None else retries
        progress = not getattr(args, "no_progress", False) and sys.stderr.isatty()
        if ray is not None:
            address = None if ray == LOCAL else ray
            _ray_module()                               # fail before any work: not installed,
            if address or settings.RAY_ADDRESS:         # or nothing listens at the address
                _reachable(address or settings.RAY_ADDRESS)
            return cls("ray", workers or 0, address, retries, progress)
        workers = workers or default_workers or settings.THREADS
        return cls("inline" if workers == 1 else "local", workers, None, retries, progress)

    @property
    def describe(self) -> str:
        if self.mode == "ray":
            return f"Ray ({self.address or settings.RAY_ADDRESS or 'local'})"
        return "this process" if self.mode == "inline" else f"a local pool of {self.workers} processes"

    @property
    def parallelism(self) -> int:
        """How many tasks run at once (for choosing shard counts); Ray: the cluster's CPUs."""
        if self.mode == "ray":
            ray = connect_ray(self)
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self.workers

    def map(self, fn, tasks, desc: str = "tasks", on_result=None) -> list:
        """[fn(t) for t in tasks], in task order. on_result(i, result) is called as each task
        finishes (completion order: for progress reports only, never for merging)."""
        tasks = list(tasks)
        if not tasks:
            return []
        from tqdm import tqdm
        with tqdm(total=len(tasks), desc=desc, unit="task", disable=not self.progress, dynamic_ncols=True) as bar:
            def done(i, value):
                bar.update()
                if on_result is not None:
                    on_result(i, value)
            if self.mode == "inline":
                out = []
                for i, t in enumerate(tasks):
                    out.append(fn(t))
                    done(i, out[-1])
                return out
            if self.mode == "local":
                return _local_map(fn, tasks, min(self.workers, len(tasks)), self.retries, done)
            return _ray_map(self, fn, tasks, done)


LOCAL = "local"          # the value of a bare --ray


# ------------------------------------------------------------------ local pool
def _worker_main(conn) -> None:
    """A pool process: run (index, fn, task) messages until None; answer (index, ok, value)."""
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        i, fn, task = msg
        try:
            out = (i, True, fn(task))
        except BaseException as e:          # noqa: BLE001 - sent back to the parent
            out = (i, False, _portable(e))
        try:
            conn.send(out)
        except Exception as e:              # noqa: BLE001 - an unpicklable result
            conn.send((i, False, TaskFailed(f"the result of task {i} cannot be sent back: {e}")))


def _portable(e: BaseException) -> BaseException:
    """The exception itself when it pickles (UsageError stays a UsageError), else a TaskFailed
    carrying its traceback text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:                       # noqa: BLE001
        return TaskFailed("".join(traceback.format_exception(e)))


class _Pool:
    def __init__(self, n: int):
        self.ctx = mp.get_context("spawn")   # fork is unsafe with torch's and Verilator's threads
        self.procs = {}                      # connection -> [process, task index or None]
        for _ in range(n):
            self.start()

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(child,), daemon=True)
        p.start()
        child.close()
        self.procs[parent] = [p, None]

    def idle(self):
        return [c for c, (_, i) in self.procs.items() if i is None]

    def close(self) -> None:
        for conn, (p, _) in self.procs.items():
            try:
                conn.send(None)
            except OSError:
                pass
        for conn, (p, _) in self.procs.items():
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
            conn.close()
        self.procs.clear()


def _local_map(fn, tasks, n: int, retries: int, done) -> list:
    results, finished = [None] * len(tasks), [False] * len(tasks)
    pending, lost = deque(range(len(tasks))), [0] * len(tasks)
    pool = _Pool(n)
    try:
        while not all(finished):
            for conn in pool.idle():
                if not pending:
                    break
                i = pending.popleft()
                pool.procs[conn][1] = i
                conn.send((i, fn, tasks[i]))
            sentinels = {pool.procs[c][0].sentinel: c for c in pool.procs}
            for r in wait(list(pool.procs) + list(sentinels)):
                conn = sentinels.get(r, r)
                if conn not in pool.procs:
                    continue                           # both its pipe and its sentinel were ready
                try:
                    msg = conn.recv() if conn.poll() else None
                except (EOFError, OSError):            # the pipe closed: the worker is gone
                    msg = None
                else:
                    if msg is None and pool.procs[conn][0].is_alive():
                        continue
                if msg is None:
                    i = _lose(pool, conn, retries, lost)
                    if i is not None:
                        pending.appendleft(i)
                    continue
                i, ok, value = msg
                pool.procs[conn][1] = None
                if not ok:
                    raise value
                results[i], finished[i] = value, True
                done(i, value)
    finally:
        pool.close()
    return results


def _lose(pool: _Pool, conn, retries: int, lost: list):
    """A worker died: start a new one; its task (if any) is retried or, past `retries`, fails."""
    p, i = pool.procs.pop(conn)
    p.join(timeout=5)
    conn.close()
    pool.start()
    if i is None:
        return None
    lost[i] += 1
    if lost[i] > retries:
        raise TaskFailed(f"task {i} lost its worker {lost[i]} times (last exit code {p.exitcode}); "
                         f"giving up after {retries} retries (--retries)")
    print(f"warning: the worker of task {i} died (exit code {p.exitcode}); running it again "
          f"({lost[i]} of {retries} retries)", file=sys.stderr)
    return i


# ------------------------------------------------------------------ Ray
def _ray_module():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed; install it with {RAY_INSTALL}") from None
    return ray


def _reachable(address: str) -> None:
    """Fail fast (exit 2) on an address nothing listens at; ray.init would retry for minutes."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r} is not host:port; give the address `ray start --head` "
                         f"printed (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001), or use --ray alone for a local Ray")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it with "
                         f"`ray start --head` on the head node and pass the address it prints, or use --ray alone "
                         f"for a local Ray") from None


def connect_ray(ex: Executor):
    """The ray module, initialised: reuses a running session (tests share one) unless it is
    with another cluster than the address asked for, joins ex.address or RAY_ADDRESS, or
    starts a local Ray (no dashboard) with ex.workers CPUs."""
    ray = _ray_module()
    address = ex.address or settings.RAY_ADDRESS
    if address:
        _reachable(address)
    if ray.is_initialized():
        if not address or address == "auto" or address == ray.get_runtime_context().gcs_address:
            return ray
        ray.shutdown()                    # a session with another cluster: join the one asked for
    path = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    if address:
        # the cluster's Python environment must have the dependencies (docs/cluster.md); our
        # packages travel with the job, so every node runs the driver's version of the code
        env = {"py_modules": [str(ROOT / p) for p in PACKAGES], "env_vars": _forwarded_env()}
        try:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        except Exception as e:           # noqa: BLE001 - ConnectionError, version mismatch, ...
            raise UsageError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}; check that its "
                             f"Ray and Python versions match this one ({ray.__version__}, {sys.version.split()[0]}) "
                             f"and, with Ray's token authentication, that this machine has the cluster's token "
                             f"(~/.ray/auth_token or RAY_AUTH_TOKEN) and RAY_AUTH_MODE=token "
                             f"(docs/cluster.md)") from None
    else:
        ray.init(address="local", num_cpus=ex.workers or None, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {**_forwarded_env(local=True), "PYTHONPATH": path}})
    return ray


def _forwarded_env(local: bool = False) -> dict:
    """SPVIT_* settings and the simulator's Yosys mode travel to Ray workers (whose working
    directory is Ray's, so a local Ray gets the build directory as an absolute path)."""
    keep = {k: v for k, v in os.environ.items() if k.startswith("SPVIT_")}
    if local:
        keep["SPVIT_BUILD"] = str(settings.BUILD.resolve())
    keep.setdefault("AMARANTH_USE_YOSYS", os.environ.get("AMARANTH_USE_YOSYS", "builtin"))
    return keep


def _ray_map(ex: Executor, fn, tasks, done) -> list:
    ray = connect_ray(ex)
    from ray.exceptions import RayTaskError, WorkerCrashedError
    remote = ray.remote(max_retries=ex.retries, retry_exceptions=False)(fn)
    refs = [remote.remote(t) for t in tasks]
    index = {r: i for i, r in enumerate(refs)}
    results, left = [None] * len(tasks), list(refs)
    try:
        while left:
            ready, left = ray.wait(left, num_returns=1)
            for r in ready:
                i = index[r]
                try:
                    results[i] = ray.get(r)
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    raise cause if isinstance(cause, Exception) else TaskFailed(str(e)) from None
                except WorkerCrashedError as e:
                    raise TaskFailed(f"task {i} lost its worker {ex.retries + 1} times; giving up after "
                                     f"{ex.retries} retries (--retries): {e}") from None
                done(i, results[i])
    except BaseException:
        for r in left:
            ray.cancel(r, force=True)
        raise
    return results
