"""`spvit compare` sharded over a local pool and a local Ray gives the single-process report
number for number (JSON byte for byte, printed table line for line): the demo model on a few
dozen held-out digits, in batches that do not divide the image count."""
from __future__ import annotations

from quant import DEMO_CHECKPOINT
from quant.shard import shards
from spvit.cli import main

ARGS = ["--data", "digits:test", "--limit", "44", "--batch", "8", "--sqnr-images", "20", "--no-progress"]


def _compare(package, out, capsys, *extra):
    assert main(["compare", "--checkpoint", str(DEMO_CHECKPOINT), "--package", str(package), *ARGS,
                 "--json", str(out), *extra]) == 0
    text = capsys.readouterr().out
    table = [ln for ln in text.splitlines() if not ln.startswith(("checkpoint ", "wrote "))]
    return out.read_bytes(), table


def test_sharded_compare_equals_single_process(demo_package, tmp_path, capsys, request):
    package = demo_package
    one = _compare(package, tmp_path / "one.json", capsys)
    assert b'"images": 44' in one[0] and any("top-1" in ln for ln in one[1])
    assert b'"per_image"' in one[0] and b'"item": "digits:test[' in one[0]     # per-image logits and masks too
    pool = _compare(package, tmp_path / "pool.json", capsys, "--workers", "2")
    assert pool == one
    request.getfixturevalue("ray_session")
    ray = _compare(package, tmp_path / "ray.json", capsys, "--ray")
    assert ray == one


def test_shards_are_whole_batches_in_order():
    for n, batch, par in ((44, 8, 2), (600, 16, 2), (5, 8, 4), (1000, 7, 3), (16, 16, 8)):
        s = shards(n, batch, par)
        assert s[0][0] == 0 and s[-1][1] == n
        assert all(a % batch == 0 and a < b for a, b in s)
        assert all(s[i][1] == s[i + 1][0] for i in range(len(s) - 1))
