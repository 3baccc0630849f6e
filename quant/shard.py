"""`spvit compare` over several processes or a Ray cluster: the data is cut into shards of
whole batches, each shard is compared by a worker (quant.compare.compare_part) and the parts
are merged in data order (quant.compare.finish). Because shards start on batch boundaries,
every batch sees the same images as in one process, and the SQNR sums are added exactly
(math.fsum), the merged report equals the single-process report number for number.

Workers load the checkpoint, package and data themselves (once per worker process) from the
paths given, so on a cluster those paths must be readable on every node (docs/cluster.md).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from base import settings
from base.errors import UsageError
from golden.arith import set_engine
from golden.config import load_config

from . import single_thread
from .compare import compare_part, finish
from .data import load_data
from .loaders import load_float_model
from .package import load_package, package_config, read_manifest


@dataclass(frozen=True)
class Sources:
    """What a worker loads: the same arguments `spvit compare` got."""
    checkpoint: str
    package: str
    config: str | None
    data: str
    limit: int | None

    def absolute(self) -> "Sources":
        """Paths that exist made absolute (Ray workers do not run in the driver's directory)."""
        fix = {k: str(Path(v).resolve()) for k in ("checkpoint", "package", "config", "data")
               if (v := getattr(self, k)) and Path(v).exists()}
        return dataclasses.replace(self, **fix)


def load(src: Sources):
    """(float model, integer model, package manifest, data) as `spvit compare` loads them."""
    man = read_manifest(src.package)
    pcfg = package_config(man, src.package)
    cfg = load_config(src.config).model if src.config else pcfg
    q, man = load_package(src.package, cfg)
    model = load_float_model(src.checkpoint, cfg)
    data = load_data(src.data, cfg, default_split="test").take(src.limit)
    return model, q, man, data


@functools.lru_cache(maxsize=2)
def _cached(src: Sources):
    return load(src)


def compare_shard(task):
    """One task: (Sources, start, stop, batch, sqnr_images) -> quant.compare.ComparePart."""
    src, start, stop, batch, sqnr_images = task
    single_thread()
    set_engine(settings.MATMUL)          # a worker process starts with the defaults
    model, q, _, data = _cached(src)
    return compare_part(model, q, data, start, stop, batch, sqnr_images)


def shards(n: int, batch: int, parallelism: int, per_worker: int = 4) -> list[tuple[int, int]]:
    """[start, stop) ranges of whole batches: about `per_worker` shards per worker (so the
    progress bar moves and a lost worker costs little), at least one batch each."""
    batches = -(-n // batch)
    per = max(1, -(-batches // (parallelism * per_worker)))
    return [(s * batch, min(n, (s + per) * batch)) for s in range(0, batches, per)]


def compare_sharded(src: Sources, cfg, data, batch: int, sqnr_images: int, ex):
    """The report of `data` (as the driver loaded it from `src`) compared shard by shard."""
    n = len(data)
    if n == 0:
        raise UsageError(f"data {src.data!r} has no images to compare on")
    wsrc = src.absolute()
    tasks = [(wsrc, a, b, batch, sqnr_images) for a, b in shards(n, batch, ex.parallelism)]
    parts = ex.map(compare_shard, tasks, desc=f"compare ({n} images)")
    r = finish(parts, cfg)
    r.items = [data.item_name(i) for i in range(n)]      # names as given (workers see absolute paths)
    return r
