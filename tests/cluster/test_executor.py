"""base.cluster: results in task order whatever the completion order, a task whose worker dies
is run again (and fails after --retries), a task's own exception is re-raised as itself, on the
local pool and on a local Ray; bad --ray use exits 2 with the fix named."""
from __future__ import annotations

import sys

import pytest

from base.cluster import Executor, TaskFailed
from base.errors import UsageError
from spvit.cli import main
from tests.cluster import tasks

MODES = ["inline", "local", "ray"]


def _ex(mode, request, **kw):
    if mode == "ray":
        request.getfixturevalue("ray_session")
    return Executor(mode, 2, progress=False, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_results_in_task_order(mode, request):
    """Later tasks finish first (shorter delays); results still come back by task id."""
    ex = _ex(mode, request)
    got = ex.map(tasks.square, [(k, 0.05 * (6 - k)) for k in range(6)])
    assert got == [(k, k * k) for k in range(6)]
    assert ex.map(tasks.square, []) == []


@pytest.mark.parametrize("mode", ["local", "ray"])
def test_lost_worker_is_retried(mode, request, tmp_path):
    """Every task kills its worker process on its first run; each is run again and succeeds."""
    ex = _ex(mode, request)
    got = ex.map(tasks.die_once, [(str(tmp_path / f"m{k}"), k) for k in range(4)])
    assert got == [0, 10, 20, 30]
    assert all((tmp_path / f"m{k}").read_text() == "died" for k in range(4))


@pytest.mark.parametrize("mode", ["local", "ray"])
def test_retries_run_out(mode, request):
    ex = _ex(mode, request, retries=1)
    with pytest.raises(TaskFailed, match=r"task 0 lost its worker 2 times.*after 1 retries"):
        ex.map(tasks.always_die, [0])


@pytest.mark.parametrize("mode", MODES)
def test_task_exception_is_reraised_not_retried(mode, request):
    ex = _ex(mode, request)
    with pytest.raises(UsageError, match="task 2: bad input, fix it"):
        ex.map(tasks.bad_input, range(4))


def test_local_pool_survives_a_lost_worker_beside_others(tmp_path):
    """A worker that dies costs only its own task: the other tasks' results are all there."""
    ex = Executor("local", 2, progress=False)
    args = [(str(tmp_path / "m1"), 1)]
    (tmp_path / "m0").write_text("done")            # task 0 does not die
    got = ex.map(tasks.die_once, [(str(tmp_path / "m0"), 0)] + args + [(str(tmp_path / "m0"), 2)])
    assert got == [0, 10, 20]


def test_from_args():
    import argparse

    from spvit.cli_types import executor_arguments as add_arguments
    p = argparse.ArgumentParser()
    add_arguments(p)
    ex = Executor.from_args(p.parse_args(["--workers", "1"]))
    assert ex.mode == "inline"
    ex = Executor.from_args(p.parse_args(["--workers", "3", "--retries", "0"]))
    assert (ex.mode, ex.workers, ex.retries) == ("local", 3, 0)
    assert Executor.from_args(p.parse_args([]), default_workers=1).mode == "inline"
    with pytest.raises(SystemExit):
        p.parse_args(["--workers", "-1"])


def test_ray_not_installed_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    assert main(["regress", "--configs", "1", "--ray"]) == 2
    err = capsys.readouterr().err
    assert "--ray needs Ray, which is not installed" in err and "pip install 'spvit-accel[cluster]'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("address, text", [("127.0.0.1:9", "cannot reach the Ray cluster at 127.0.0.1:9"),
                                           ("nonsense", "is not host:port")])
def test_bad_ray_address_is_a_usage_error(address, text, capsys):
    pytest.importorskip("ray")
    assert main(["regress", "--configs", "1", "--ray", address]) == 2
    err = capsys.readouterr().err
    assert text in err and "ray start --head" in err


def test_ray_address_from_the_environment(monkeypatch, capsys):
    pytest.importorskip("ray")
    from base import settings
    monkeypatch.setattr(settings, "RAY_ADDRESS", "127.0.0.1:9")
    assert main(["regress", "--configs", "1", "--ray"]) == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in capsys.readouterr().err
