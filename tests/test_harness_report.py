"""`harness report` renders the leaderboard, the task x stream matrix and plots from a fixed results file."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).parent / "data" / "harness_results.csv"


def test_report_from_fixed_results(run_cli, tmp_path):
    out = tmp_path / "r.md"
    plots = tmp_path / "plots"
    run_cli("report", DATA, "--out", out, "--plots", plots)
    md = out.read_text()
    # best-of-stream leaderboard: jooci's best SID comes from the other stream, best PR (lower PER) from content
    assert "| jooci | 0.7800 (other) | 0.5700 (other) | 0.3500 (content) |" in md
    assert "| fbank | hidden_states | all | 0.4100 | 0.4400 | 0.6200 |" in md
    # matrix row for PR (lower is better) and the signed disentanglement summary
    assert "| pr per ↓ | 0.6200 | 0.3500 | 0.7100 |" in md
    assert "sid: other better by +0.5600" in md and "pr: content better by +0.3600" in md
    # layer weights read back from the rows: top content layer is 3
    assert "| sid | jooci | content | 6 | 3:0.30" in md
    for name in ("bars.png", "matrix.png", "layer_weights.png"):
        p = plots / name
        assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000
        assert f"plots/{name}" in md


def test_report_errors_clearly(run_cli, tmp_path):
    p = run_cli("report", tmp_path / "nope.csv", check=False)
    assert p.returncode == 2 and "no such results file" in p.stderr
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1]}).to_csv(bad, index=False)
    p = run_cli("report", bad, check=False)
    assert p.returncode == 2 and "lacks columns" in p.stderr


def test_matrix_is_best_over_layers():
    from harness.superb.report import disentanglement_matrix

    df = pd.read_csv(DATA)
    extra = df[(df.task == "pr") & (df.feature == "content")].copy()
    extra["layers"], extra["value"] = "6-11", 0.30       # a better (lower) PER from a subset
    m = disentanglement_matrix(pd.concat([df, extra], ignore_index=True))
    assert m.loc["pr", ("jooci", "content")] == 0.30
    assert m.loc["sid", ("jooci", "other")] == 0.78
