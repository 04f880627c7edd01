"""harness.warm: setup.sh installs with pip --no-compile and then writes the bytecode of the modules
DUET imports; the list must name real modules, and warm() must write .pyc even under
PYTHONDONTWRITEBYTECODE (this machine's shell sets it)."""
import importlib.util
import sys

from harness import warm


def test_every_warm_module_exists_in_this_environment():
    missing = [m for m in warm.WARM_MODULES if importlib.util.find_spec(m.split(".")[0]) is None
               or importlib.util.find_spec(m) is None]
    assert not missing, f"harness/warm.py names modules this environment does not have: {missing}"


def test_warm_writes_bytecode_and_reports_failures(tmp_path, monkeypatch):
    (tmp_path / "duet_warm_probe.py").write_text("VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)       # as under PYTHONDONTWRITEBYTECODE=1
    pyc = importlib.util.cache_from_source(str(tmp_path / "duet_warm_probe.py"))
    try:
        loaded, failed = warm.warm(("duet_warm_probe", "duet_no_such_module_xyz"))
        assert sys.modules["duet_warm_probe"].VALUE == 3
    finally:
        sys.modules.pop("duet_warm_probe", None)
    assert len(failed) == 1 and failed[0].startswith("duet_no_such_module_xyz (ModuleNotFoundError")
    assert loaded > 1
    from pathlib import Path
    assert Path(pyc).is_file(), "warm() did not write the module's bytecode"
