"""Worker processes that stop with the command: workers ignore SIGINT (a Ctrl-C reaches the
whole process group; the parent alone reports it) and are terminated when the parent stops
early (an error, Ctrl-C or SIGTERM), so no orphan keeps writing."""
from __future__ import annotations

import multiprocessing
import signal


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def process_map(fn, jobs: list, workers: int) -> list:
    """[fn(j) for j in jobs] over at most `workers` processes (in this process when 1)."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [fn(j) for j in jobs]
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
    try:
        out = pool.map(fn, jobs, chunksize=1)
        pool.close()
        return out
    finally:
        pool.terminate()
        pool.join()
