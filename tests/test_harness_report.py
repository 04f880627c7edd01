"""`harness report` renders the leaderboard, the task x stream matrix and plots from a fixed results file."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.superb.report import REPORT_MARKER

DATA = Path(__file__).parent / "data" / "harness_results.csv"


def test_report_from_fixed_results(run_cli, tmp_path):
    out = tmp_path / "r.md"
    plots = tmp_path / "plots"
    run_cli("report", DATA, "--out", out, "--plots", plots)
    md = out.read_text()
    # best-of-stream leaderboard: jooci's best SID comes from the other stream, best PR (lower PER) from content
    # the fixture's rows predate percent units: fractions are read as percent
    assert "| jooci | 78.0 (other) | 57.0 (other) | 35.0 (content) |" in md
    assert "| fbank | hidden_states | all | 41.0 | 44.0 | 62.0 |" in md
    # matrix row for PR (lower is better) and the signed disentanglement summary
    assert "| pr per % ↓ | 62.0 | 35.0 | 71.0 |" in md
    assert "sid: other better by +56.0 points" in md and "pr: content better by +36.0 points" in md
    # layer weights read back from the rows: top content layer is 3
    assert "| sid | jooci | content | 6 | 3:0.30" in md
    # capped steps (20) are marked and explained
    assert "| sid acc % ↑ | fbank | hidden_states | 41.0 | – | – | – | ? | – | ¹ |" in md
    assert "¹ `--steps` capped" in md
    assert md.splitlines()[0] == REPORT_MARKER
    for name in ("bars", "matrix", "layer_weights"):
        p = plots / f"{name}.png"
        assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000
        assert (plots / f"{name}.pdf").is_file()
        assert f"plots/{name}.png" in md


def _rows_with_chance(tmp_path) -> Path:
    from harness.superb.chance import learned, wilson

    rows = []
    for task, up, feat, value, chance, hib, n, why in (
            ("sid", "fbank_no_cmvn", "hidden_states", 85.0, 1.0, True, 300, "mini config on a generated corpus"),
            ("sid", "jooci", "content", 1.3, 1.0, True, 300, "mini config on a generated corpus"),
            ("er", "fbank_no_cmvn", "hidden_states", 62.0, 40.0, True, 200,
             "1 of 5 folds; mini config on a generated corpus"),
            ("asr", "fbank", "hidden_states", 97.0, 100.0, False, 300, "steps capped at 50")):
        lo, hi = wilson(value, n)
        rows.append({"task": task, "upstream": up, "feature": feat, "layers": "all", "metric": "acc" if hib else "wer",
                     "unit": "%", "value": value, "ci_low": lo, "ci_high": hi, "chance": chance,
                     "chance_kind": "1/classes" if task == "sid" else "majority class" if task == "er" else
                     "best constant output", "n_test": n, "learned": learned(value, chance, n, hib),
                     "higher_is_better": hib, "not_comparable": why, "superb_comparable": False,
                     "cer": 30.0 if task == "asr" else None, "cer_chance": 88.0 if task == "asr" else None})
    p = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_report_shows_chance_learned_and_why_rows_are_not_comparable(run_cli, tmp_path):
    src = _rows_with_chance(tmp_path)
    out = tmp_path / "rows.md"
    run_cli("report", src, "--out", out, "--no-plots")
    md = out.read_text()
    assert "| sid acc % ↑ | fbank_no_cmvn | hidden_states | 85.0 [80.5, 88.6] | 1.0 | 1/classes | 300 | yes | – | ³ |" in md
    assert "| sid acc % ↑ | jooci | content | 1.3 [" in md and "| 300 | **no** |" in md
    assert "| er acc % ↑ | fbank_no_cmvn | hidden_states | 62.0 [" in md and "| ²³ |" in md
    assert "| 30.0 (chance 88.0) | ¹ |" in md
    for mark in ("¹ `--steps`", "² `--folds`", "³ a mini config"):
        assert mark in md


def test_report_never_overwrites_a_hand_written_file(run_cli, tmp_path):
    src = _rows_with_chance(tmp_path)
    mine = tmp_path / "notes.md"
    mine.write_text("# my notes\nwritten by hand\n")
    p = run_cli("report", src, "--out", mine, "--no-plots", check=False)
    assert p.returncode == 2 and "refusing to overwrite" in p.stderr and "--out OTHER.md" in p.stderr
    assert mine.read_text() == "# my notes\nwritten by hand\n"
    ours = tmp_path / "ours.md"
    run_cli("report", src, "--out", ours, "--no-plots")
    run_cli("report", src, "--out", ours, "--no-plots", "--title", "again")     # its own report: replaced
    assert "# again" in ours.read_text()


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


def test_report_names_each_checkpoint_of_a_rebundled_upstream(run_cli, tmp_path):
    """A results CSV that outlived a re-bundle holds cells of two jooci checkpoints: each gets its own name."""
    df = pd.read_csv(_rows_with_chance(tmp_path))
    df["ckpt_hash"] = "-"
    j = df[df.upstream == "jooci"].copy()
    df.loc[df.upstream == "jooci", "ckpt_hash"] = "a483ea10b95e"
    j["ckpt_hash"], j["value"] = "c373f843bc01", 2.7
    p = tmp_path / "two.csv"
    pd.concat([df, j]).to_csv(p, index=False)
    out = tmp_path / "two.md"
    run_cli("report", p, "--out", out, "--no-plots")
    md = out.read_text()
    assert "| sid acc % ↑ | jooci@a483ea10 | content | 1.3" in md and "| sid acc % ↑ | jooci@c373f843 | content | 2.7" in md
    assert "| sid acc % ↑ | jooci | " not in md and "| sid acc % ↑ | fbank_no_cmvn | " in md


def test_report_lists_and_on_request_leaves_out_cells_of_a_changed_checkpoint(run_cli, tmp_path):
    """A results CSV outlived a re-bundle: its old jooci cells recorded a hash that the files now at
    their path no longer have. The report says so (and names them jooci@hash); --current-checkpoints
    leaves exactly those out and says how many. A checkpoint path that is not there is kept, flagged."""
    import shutil

    from upstream.checkpoint import checkpoint_hash, save_random_preset

    old = save_random_preset("jooci", "tiny", tmp_path / "a", seed=1)
    new = save_random_preset("jooci", "tiny", tmp_path / "b", seed=2)
    here = tmp_path / "checkpoints" / "jooci-compact"
    shutil.copytree(new, here)                                   # the re-bundle: new weights at the old path
    h_old, h_new = checkpoint_hash(old), checkpoint_hash(new)
    assert h_old != h_new
    df = pd.read_csv(_rows_with_chance(tmp_path))
    df["ckpt_hash"], df["ckpt"] = "-", None
    j = df.upstream == "jooci"
    df.loc[j, "ckpt_hash"], df.loc[j, "ckpt"] = h_new, str(here)
    was = df[j].assign(ckpt_hash=h_old, value=2.7)               # the same cell, run on the old weights
    gone = df[j].assign(upstream="learn2diss", ckpt_hash="0123456789ab", ckpt=str(tmp_path / "moved"), value=3.1)
    src = tmp_path / "mixed.csv"
    pd.concat([df, was, gone]).to_csv(src, index=False)

    out = tmp_path / "all.md"
    p = run_cli("report", src, "--out", out, "--no-plots")
    md = out.read_text()
    assert f"**Stale cells in these tables**: `jooci` sha {h_old} at `{here}`: 1 cell(s), stale: the files at " \
           f"that path now hash to {h_new}" in md
    assert f"jooci@{h_old[:8]} | content | 2.7" in md and f"jooci@{h_new[:8]} | content | 1.3" in md
    assert "--current-checkpoints" in md and h_old in p.stderr
    assert f"`learn2diss` sha 0123456789ab at `{tmp_path / 'moved'}`: 1 cell(s), cannot be checked" in md
    assert f"sha {h_new} at" not in md                                    # the current one: no note

    cur = tmp_path / "current.md"
    run_cli("report", src, "--out", cur, "--no-plots", "--current-checkpoints")
    md = cur.read_text()
    assert f"Left out (`--current-checkpoints`), because the checkpoint at their recorded path has changed since " \
           f"they ran: `jooci` sha {h_old}" in md
    assert "| sid acc % ↑ | jooci | content | 1.3" in md and "2.7" not in md.split("## Every cell")[1]
    assert "| sid acc % ↑ | learn2diss | content | 3.1" in md                # not checkable: kept
    assert "| sid acc % ↑ | fbank_no_cmvn | hidden_states | 85.0" in md     # no checkpoint: always current
