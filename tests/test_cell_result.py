"""The cell process reports through result.json: per-run test metrics, for ASV the best EER over
every saved checkpoint (as SUPERB does), and the stage that failed."""
from __future__ import annotations

import json
from pathlib import Path

from harness.superb import cell_main
from harness.superb.tasks import TASKS


def _fake_runner(expdir: Path, eers: dict[int, float], fail_train: bool = False):
    calls = []

    def run_downstream(argv, capture=False):
        calls.append(argv)
        if argv[:2] == ["-m", "train"]:
            if fail_train:
                return 1, ""
            for step in eers:
                (expdir / f"states-{step}.ckpt").write_bytes(b"")
            return 0, ""
        step = int(Path(argv[argv.index("-e") + 1]).stem.split("-")[-1])
        return 0, f"noise\nsv-voxceleb1/test-EER: {eers[step]}\n"
    return run_downstream, calls


def test_asv_reports_the_best_eer_over_every_checkpoint(tmp_path, monkeypatch):
    expdir = tmp_path / "exp"
    expdir.mkdir()
    fake, calls = _fake_runner(expdir, {200: 0.31, 400: 0.22, 600: 0.27})
    monkeypatch.setattr(cell_main, "run_downstream", fake)
    plan = {"task": "asv", "runs": [{"name": "main", "train": ["-m", "train"], "expdir": str(expdir)}],
            "test_splits": ["test"]}
    assert cell_main.run_plan(plan, tmp_path / "result.json") == 0
    result = json.loads((tmp_path / "result.json").read_text())
    run = result["runs"][0]
    assert result["ok"] and run["ckpt"].endswith("states-400.ckpt") and run["test"] == {"test": 0.22}
    assert [t["test"]["test"] for t in run["tested"]] == [0.31, 0.22, 0.27]
    assert len([c for c in calls if c[:2] == ["-m", "evaluate"]]) == 3


def test_dev_selected_tasks_test_one_checkpoint_and_failures_are_data(tmp_path, monkeypatch):
    expdir = tmp_path / "exp"
    expdir.mkdir()
    (expdir / "dev-best.ckpt").write_bytes(b"")
    (expdir / "states-100.ckpt").write_bytes(b"")
    assert TASKS["sid"].test_checkpoints(expdir) == [expdir / "dev-best.ckpt"]
    assert TASKS["asv"].test_checkpoints(expdir) == [expdir / "states-100.ckpt"]
    fake, _ = _fake_runner(expdir, {}, fail_train=True)
    monkeypatch.setattr(cell_main, "run_downstream", fake)
    plan = {"task": "sid", "runs": [{"name": "main", "train": ["-m", "train"], "expdir": str(expdir)}],
            "test_splits": ["test"]}
    assert cell_main.run_plan(plan, tmp_path / "result.json") == 1
    result = json.loads((tmp_path / "result.json").read_text())
    assert not result["ok"] and result["stage"] == "train" and "exited with 1" in result["error"]
