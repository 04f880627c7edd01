"""Chance levels, intervals, `learned`, percent units and SUPERB comparability of result rows."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.corpus.layout import CorpusLayout
from harness.superb import chance as ch
from harness.superb.cells import Cell
from harness.superb.results import RunContext, build_row, in_percent
from harness.superb.runner import CellOutcome


def test_wilson_interval_matches_the_formula_and_narrows_with_n():
    lo, hi = ch.wilson(80.0, 100)
    assert lo == pytest.approx(71.1, abs=0.05) and hi == pytest.approx(86.7, abs=0.05)
    lo2, hi2 = ch.wilson(80.0, 1000)
    assert lo < lo2 < 80.0 < hi2 < hi
    assert ch.wilson(0.0, 10)[0] == 0.0 and ch.wilson(100.0, 10)[1] == 100.0     # exactly: p lies inside
    assert ch.wilson(130.0, 10) == ch.wilson(100.0, 10)       # an error rate above 100 % is clipped
    assert all(math.isnan(x) for x in ch.wilson(50.0, 0))


def test_learned_is_decided_by_the_interval_not_the_point():
    # 12 % on 300 utterances vs chance 1 %: learned; 2 % on 300 (interval reaches 1 %): not
    assert ch.learned(12.0, 1.0, 300, True) is True
    assert ch.learned(2.0, 1.0, 300, True) is False
    # an error rate: 93 % PER on 50 utterances vs chance 97 %: interval [82.5, 97.4] reaches 97 -> not learned
    assert ch.learned(93.0, 97.0, 50, False) is False
    assert ch.learned(60.0, 97.0, 50, False) is True
    assert ch.learned(60.0, None, 50, False) is None and ch.learned(60.0, 90.0, None, False) is None


def test_best_constant_output():
    assert ch.best_constant_error([["a", "b", "a"], ["a", "c"]]) == 60.0
    assert ch.best_constant_error([["x", "y"], ["z"]]) == 100.0     # "x" once: 1 + 2 errors; empty: 3
    assert ch.best_constant_error([]) == 100.0


def test_chance_from_the_tiny_corpus(tiny_corpus):
    lay = CorpusLayout(tiny_corpus)
    lines = [ln.split() for ln in lay.iden_split.read_text().splitlines()]
    spk = {ln[1].split("/")[0] for ln in lines}
    sid = ch.chance_for("sid", lay)["value"]
    assert sid.value == pytest.approx(100 / len(spk)) and sid.n_test == sum(ln[0] == "3" for ln in lines)
    er = ch.chance_for("er", lay, ["fold1", "fold2"])["value"]
    import json
    from collections import Counter
    labels = [m["label"] for k in (1, 2) for m in json.loads(lay.iemocap_meta_json(k, "test").read_text())["meta_data"]]
    assert er.n_test == len(labels) and er.value == pytest.approx(
        100 * sum(Counter(m["label"] for m in json.loads(lay.iemocap_meta_json(k, "test").read_text())["meta_data"])
                  .most_common(1)[0][1] for k in (1, 2)) / len(labels))
    assert 25.0 <= er.value < 100.0
    asv = ch.chance_for("asv", lay)["value"]
    assert asv.value == 50.0 and asv.n_test == len(lay.veri_test.read_text().split("\n")) - 1
    pr = ch.chance_for("pr", lay)["value"]
    assert 80.0 < pr.value <= 100.0 and pr.kind == "best constant output" and pr.n_test > 0
    asr = ch.chance_for("asr", lay)
    assert 80.0 < asr["value"].value <= 100.0 and 70.0 < asr["cer"].value <= 100.0
    assert ch.chance_for("sid", CorpusLayout(tiny_corpus / "missing"))["value"].value is None


def _cell(task, steps=None):
    return Cell(task=task, upstream="fbank", ckpt=None, ckpt_hash="-", feature="hidden_states", layers="all",
                corpus="/c", corpus_id="c1", config_id="k1", steps=steps)


def _outcome(value, runs=("main",), extra=None):
    return CellOutcome(value=value, run_values=[value] * len(runs), runs=list(runs), wall_s=1.0, eval_ckpt="",
                       layer_weights=None, command="", log="", cache_hit_rate=None, extra=extra or {})


def _ctx(root, corpus="tiny"):
    return RunContext(corpus=corpus, corpus_path=str(root), device="cpu", machine="m", git_commit="g", command="c")


def test_build_row_percent_chance_learned_and_comparability(tiny_corpus):
    row = build_row(_cell("sid"), Path("sid.yaml"), "acc", True, _outcome(0.5), _ctx(tiny_corpus), cache=False)
    assert row["value"] == 50.0 and row["unit"] == "%" and row["run_values"] == [50.0]
    assert row["chance_kind"].startswith("1/classes") and row["learned"] is True
    assert row["ci_low"] < 50.0 < row["ci_high"]
    assert row["superb_comparable"] is False and row["not_comparable"] == "mini config on a generated corpus"
    low = build_row(_cell("sid"), Path("sid.yaml"), "acc", True, _outcome(row["chance"] / 100), _ctx(tiny_corpus),
                    cache=False)
    assert low["learned"] is False
    er = build_row(_cell("er", steps=20), Path("er.yaml"), "acc", True, _outcome(0.4, runs=("fold1",)),
                   _ctx(tiny_corpus), cache=False)
    assert er["folds_run"] == 1 and er["folds_total"] == 5
    assert "steps capped at 20" in er["not_comparable"] and "1 of 5 folds" in er["not_comparable"]
    asr = build_row(_cell("asr"), Path("asr.yaml"), "wer", False, _outcome(99.0, extra={"cer": 30.0}),
                    _ctx(tiny_corpus), cache=False)
    assert asr["value"] == 99.0 and asr["cer"] == 30.0 and asr["cer_learned"] is True
    assert asr["cer_ci_low"] < 30.0 < asr["cer_ci_high"] and asr["cer_chance"] > 70.0


def test_real_data_rows_are_comparable_when_uncapped(tiny_corpus):
    ctx = RunContext(corpus="real:data", corpus_path="/nowhere.yaml", device="cpu", machine="m", git_commit="g",
                     command="c", layout=CorpusLayout(tiny_corpus))
    row = build_row(_cell("sid"), Path("sid.yaml"), "acc", True, _outcome(0.5), ctx, cache=False)
    assert row["superb_comparable"] is True and row["not_comparable"] == "" and row["chance"] is not None


def test_old_fraction_rows_are_read_in_percent():
    import pandas as pd
    df = in_percent(pd.DataFrame({"task": ["sid", "asr", "pr"], "value": [0.5, 40.0, 0.3]}))
    assert df["value"].tolist() == [50.0, 40.0, 30.0] and set(df["unit"]) == {"%"}
    again = in_percent(df)
    assert again["value"].tolist() == [50.0, 40.0, 30.0]


def test_asr_prints_cer_as_uer_and_the_spec_parses_it():
    from harness.superb.tasks import TASKS
    text = "test-clean loss: 3.1\ntest-clean uer: 31.5\ntest-clean wer: 88.0\n"
    assert TASKS["asr"].parse_metric(text) == 88.0
    assert TASKS["asr"].parse_extra(text) == {"cer": 31.5}
    assert TASKS["sid"].parse_extra("test acc: 0.5") == {}
