"""`harness calibrate`: controls per task, verdicts, argument errors, and (slow, opt-in) a tiny run."""
from __future__ import annotations

import pytest

from harness.cli.calibrate import MARKER, targets, verdict
from harness.superb.calibration import CONTROLS, er_split, sid_split
from harness.superb.tasks import TASKS


def test_every_task_has_a_positive_and_a_negative_control():
    assert set(CONTROLS) == set(TASKS)
    for task, (pos, neg) in CONTROLS.items():
        assert pos.upstream != neg.upstream or pos.ckpt != neg.ckpt or pos.shuffled != neg.shuffled
        assert pos.why and neg.why


def test_verdicts():
    assert verdict("negative", {"learned": False}, None) == "ok: at chance"
    assert verdict("negative", {"learned": "True"}, None).startswith("FAIL")
    assert verdict("positive", {"learned": False, "value": 3.0}, 90.0) == "FAIL: not above chance"
    assert verdict("positive", {"learned": True, "value": 85.0}, 93.0) == "ok: learned, +8.0 points to the probe"
    assert verdict("positive", {"learned": True, "value": 60.0}, 93.0).startswith("under-trained")
    assert verdict("positive", {"learned": None, "value": 60.0}, None).startswith("?")


def test_targets_of_the_issue():
    rows = [{"task": "sid", "role": "positive", "value": 84.0, "learned": True},
            {"task": "er", "role": "positive", "value": 41.0, "learned": False},
            {"task": "asr", "role": "positive", "value": 80.0, "cer": 36.0, "learned": True},
            {"task": "sid", "role": "negative", "value": 1.0, "learned": False}]
    assert targets(rows) == ["SID accuracy >= 80 %: met (84.0 %)",
                             "ER accuracy above majority (interval beyond chance): NOT met (41.0 %)",
                             "ASR CER <= 35 % (WER beside it): NOT met (CER 36.0 %, WER 80.0 %)"]
    assert targets([]) [0].endswith("not run")


def test_splits_match_the_corpus(tiny_corpus):
    from harness.corpus.layout import CorpusLayout
    lay = CorpusLayout(tiny_corpus)
    s = sid_split(lay)
    n = {k: sum(1 for ln in lay.iden_split.read_text().splitlines() if ln.startswith(c))
         for k, c in (("train", "1 "), ("dev", "2 "), ("test", "3 "))}
    assert {k: len(v[0]) for k, v in s.items()} == n
    assert all(p.is_file() for p in s["test"][0]) and set(s["test"][1]) <= set(s["train"][1])
    e = er_split(lay, 1)
    assert all(p.is_file() for p in e["test"][0]) and len(e["train"][0]) > len(e["test"][0])


def test_probes_mean_and_mean_std(tiny_corpus):
    """The verdict's probe sees the frame means only (all s3prl's utterance head sees); the second probe
    adds the standard deviations. Both are accuracies on the test split, with their sample sizes."""
    from harness.corpus.layout import CorpusLayout
    from harness.superb.calibration import probe_for

    lay = CorpusLayout(tiny_corpus)
    p = probe_for("er", lay, "fbank_no_cmvn")
    n_test = len(er_split(lay, 1)["test"][0])
    assert p["probe_n_test"] == n_test and p["probe_n_train"] > n_test
    for k in ("probe", "probe_mean"):
        assert 0.0 <= p[k] <= 100.0 and (p[k] * n_test / 100.0) == pytest.approx(round(p[k] * n_test / 100.0))
    # CMVN makes every frame mean zero: the means-only probe can only predict one class
    q = probe_for("er", lay, "fbank")
    labels = er_split(lay, 1)["test"][1]
    assert q["probe_mean"] <= 100.0 * max(labels.count(c) for c in set(labels)) / len(labels) + 1e-9
    assert probe_for("asr", lay, "fbank") is None


def test_bad_arguments_exit_2_before_running(run_cli, tmp_path):
    p = run_cli("calibrate", "--tasks", "sdi", "--results", tmp_path, check=False)
    assert p.returncode == 2 and "did you mean 'sid'" in p.stderr
    p = run_cli("calibrate", "--tasks", "sid", "--steps", "0", "--results", tmp_path, check=False)
    assert p.returncode == 2 and "positive number" in p.stderr
    mine = tmp_path / "calibration.md"
    mine.write_text("hand-written\n")
    p = run_cli("calibrate", "--tasks", "sid", "--results", tmp_path, check=False)
    assert p.returncode == 2 and "refusing to overwrite" in p.stderr and mine.read_text() == "hand-written\n"
    assert not list(tmp_path.glob("calibration_*"))
    assert MARKER.startswith("<!--")


def test_no_run_reports_what_was_not_calibrated(run_cli, tiny_corpus, tmp_path):
    run_cli("calibrate", "--tasks", "sid,asr", "--corpus", tiny_corpus, "--results", tmp_path, "--no-run",
            "--no-probe")
    md = (tmp_path / "calibration.md").read_text()
    assert md.splitlines()[0] == MARKER and md.count("| not run |") == 4
    assert "- SID accuracy >= 80 %: not run" in md and "git commit:" in md and "load average" in md
    assert (tmp_path / "calibration.csv").is_file()


@pytest.mark.slow
def test_calibrate_sid_on_tiny_end_to_end(run_cli, tiny_corpus, tmp_path):
    p = run_cli("calibrate", "--tasks", "sid", "--corpus", tiny_corpus, "--steps", "5", "--results", tmp_path,
                "--device", "cpu", timeout=1200)
    md = (tmp_path / "calibration.md").read_text()
    assert md.splitlines()[0] == MARKER and "| sid | positive" in md and "| sid | negative" in md
    # fbank with CMVN + mean pooling sees a constant: the negative control is at chance by construction
    assert "ok: at chance" in md, p.stdout


def test_asr_negative_control_trains_on_the_label_shuffled_view(run_cli, tiny_corpus, tmp_path):
    """The PR/ASR negative control is fbank on the corpus's label-shuffled view: calibrate makes the view
    beside the corpora, runs the cell there, and reports that row (not the positive control's, which
    has the same upstream on the real labels)."""
    import pandas as pd

    from harness.superb.sweep import corpus_id_of

    run_cli("calibrate", "--tasks", "asr", "--controls", "negative", "--corpus", tiny_corpus, "--corpora-dir",
            tmp_path / "corpora", "--steps", "2", "--results", tmp_path, "--device", "cpu", timeout=900)
    view = tmp_path / "corpora" / "tiny-shuffled-labels1337"
    assert (view / "corpus.json").is_file()
    table = pd.read_csv(tmp_path / "calibration.csv")
    row = table[(table.task == "asr") & (table.role == "negative")].iloc[0]
    assert row.upstream == "fbank on shuffled transcripts" and row.verdict != "not run" and not str(row.verdict).startswith("no row")
    cells = pd.read_csv(tmp_path / "calibration_tiny.csv")
    assert set(cells.corpus_id.astype(str)) == {corpus_id_of(view)}
