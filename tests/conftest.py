"""Shared fixtures: a `tiny` corpus generated once per test session; opt-in slow tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Two cores: keep each test process to one intra-op thread so parallel subprocesses don't thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A `tiny` synthetic corpus (all layouts), generated once per session with seed 0."""
    from harness.corpus import make_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    return make_corpus(out, size="tiny", seed=0, workers=1)


def cli_env() -> dict:
    """Environment for subprocesses that run the real CLI from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture
def run_cli():
    """Run `python -m harness.cli ARGS...` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    def _run(*args, check=True, timeout=600, cwd=None):
        proc = subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], env=cli_env(),
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"harness {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    return _run
