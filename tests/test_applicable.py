"""Cells s3prl cannot build: a stream coarser than the ASR model's total_rate (harness.superb.applicable)."""
from __future__ import annotations

from types import SimpleNamespace

from harness.superb.applicable import modelrc, reason_not_applicable, total_rate
from harness.superb.execute import not_applicable
from harness.superb.tasks import TASKS


def test_mini_asr_rejects_an_utterance_rate_stream_only():
    rc = modelrc(TASKS["asr"].config("mini"))
    assert total_rate(rc) == 320
    assert reason_not_applicable(rc, 160) is None              # fbank, 10 ms
    assert reason_not_applicable(rc, 320) is None              # DUET content, 20 ms
    why = reason_not_applicable(rc, 3200)                      # jooci / barlow other, 5 frames/s
    assert "3200 samples per frame" in why and "total_rate is 320" in why and "content" in why


def test_tasks_without_total_rate_are_never_checked():
    cfg = TASKS["sid"].config("mini")
    assert total_rate(modelrc(cfg)) is None

    def no_rate(cell):
        raise AssertionError("the stream's rate must not be needed")

    assert not_applicable(SimpleNamespace(id="x", feature="other"), cfg, no_rate) is None
    cell = SimpleNamespace(id="y", feature="other")
    assert "0 frames" in not_applicable(cell, TASKS["asr"].config("mini"), lambda c: 3200)
