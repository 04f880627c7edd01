"""scripts/setup.sh: the default stays the CPU install (torch's CPU wheel, torchaudio fix); --cuda
installs PyPI's CUDA torch and keeps torchaudio's extension; Python 3.11 and 3.12 are accepted, others
refused. Checked through --print (the commands, nothing installed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup.sh"


def setup_sh(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def commands(out: str) -> list[str]:
    return [ln[2:] for ln in out.splitlines() if ln.startswith("+ ")]


def test_default_is_the_cpu_install():
    p = setup_sh("--print")
    assert p.returncode == 0, p.stderr
    assert commands(p.stdout) == [
        '.venv/bin/python -m pip install -q --upgrade pip<26.2',
        '.venv/bin/python -m pip install -q --no-compile torch==2.13.0',
        '.venv/bin/python -m pip install -q --no-compile -c scripts/constraints.txt -r scripts/requirements.txt',
        '.venv/bin/python -m pip install -q --no-compile -c scripts/constraints.txt --no-deps --no-build-isolation -e .',
        '.venv/bin/python -m harness.s3prl.compat --fix-torchaudio',
        '.venv/bin/python -m harness.warm']


def test_cuda_installs_pypi_torch_and_keeps_torchaudio_extension():
    p = setup_sh("--cuda", "--print")
    assert p.returncode == 0, p.stderr
    cmds = commands(p.stdout)
    assert ".venv/bin/python -m pip --isolated install -q --no-compile torch==2.13.0" in cmds
    assert not any("--fix-torchaudio" in c for c in cmds)
    assert cmds[-1] == ".venv/bin/python -m harness.warm"
    assert "variant cuda" in p.stdout


def test_python_312_accepted_others_refused(tmp_path):
    py312 = Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"
    if py312.is_file():     # the interpreter this machine has for it (not part of DUET)
        p = setup_sh("--print", python=str(py312))
        assert p.returncode == 0 and "Python 3.12" in p.stdout, p.stderr
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\n[ \"$1\" = -V ] && echo 'Python 3.10.13' && exit 0\nexit 1\n")
    fake.chmod(0o755)
    p = setup_sh("--print", python=str(fake))
    assert p.returncode == 1 and "Python 3.11 or 3.12 is required" in p.stderr and "Python 3.10.13" in p.stderr


def test_unknown_option_exit_2():
    p = setup_sh("--gpu")
    assert p.returncode == 2 and "unknown option '--gpu'" in p.stderr


def test_pyproject_accepts_311_and_312():
    import tomllib

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec == ">=3.11,<3.13"
