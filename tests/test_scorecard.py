"""The validity scorecard: its pure measures on planted signals, the summaries and issue 11's criteria,
and `harness scorecard` end to end on the tiny corpus' unseen voices with tiny random-init models."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from analysis.abx import read_item_file
from analysis.scorecard import (Best, EvalSet, ScorecardConfig, criteria, frame_labels, mean_std, phone_probe,
                                pool_factor, pool_frames, speaker_probe, split_speakers, summarize, TIE_MARK)


# --- frames, labels, splits --------------------------------------------------------------------

def test_pool_frames_averages_pairs():
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    y = pool_frames(x, 2)
    assert y.shape == (3, 2) and np.allclose(y[0], [1, 2]) and np.allclose(y[2], [9, 10])  # frame 6 dropped
    assert pool_frames(x, 1) is x
    assert pool_factor(100, 50) == 2 and pool_factor(50, 50) == 1
    with pytest.raises(ValueError, match="integer factor"):
        pool_factor(100, 30)
    with pytest.raises(ValueError):
        pool_frames(x, 0)


def test_frame_labels_and_mean_std():
    segs = [(0.0, 0.1, "sil"), (0.1, 0.25, "a"), (0.25, 0.3, "b")]
    lab = frame_labels(8, 25.0, segs)          # centres 0.02, 0.06, ..., 0.30; segments are [onset, offset)
    assert list(lab) == ["", "", "a", "a", "a", "a", "b", ""]
    f = np.array([[1.0, 0.0], [3.0, 0.0]])
    assert np.allclose(mean_std(f), [2.0, 0.0, 1.0, 0.0])


def test_split_speakers_is_disjoint_and_seeded():
    spk = [f"U{i:03d}" for i in range(10) for _ in range(3)]
    tr, te = split_speakers(spk, 0.5, 0)
    assert len(te) == 5 and not set(tr) & set(te) and set(tr) | set(te) == set(spk)
    assert split_speakers(spk, 0.5, 0) == (tr, te) and split_speakers(spk, 0.5, 1) != (tr, te)
    assert len(split_speakers(spk[:6], 0.9, 0)[0]) == 1     # at least one training speaker


# --- the probes on planted signals ---------------------------------------------------------------

def _planted(phone_signal: float, speaker_signal: float, seed: int = 0):
    """An evaluation set of 8 speakers x 4 utterances whose frames hold the phone (one-hot) and the
    speaker (a fixed offset) with the given strengths, plus noise; items table from a tiny item file."""
    rng = np.random.default_rng(seed)
    phones = ["a", "b", "c", "d"]
    spk_vec = {f"S{s}": rng.normal(size=8) for s in range(8)}
    utts, speakers, segs, feats = [], [], {}, {}
    rate = 50.0
    for s in spk_vec:
        for j in range(4):
            u = f"{s}-{j}"
            seq = [phones[k] for k in rng.integers(0, 4, 8)]
            seg, t = [(0.0, 0.1, "sil")], 0.1
            for p in seq:
                seg.append((t, t + 0.1, p))
                t += 0.1
            lab = frame_labels(int(t * rate), rate, seg)
            onehot = np.array([[float(lab_i == p) for p in phones] for lab_i in lab])
            f = np.concatenate([phone_signal * onehot, np.zeros((len(lab), 4))], 1)
            f += speaker_signal * spk_vec[s] + rng.normal(size=f.shape)
            utts.append(u)
            speakers.append(s)
            segs[u] = seg
            feats[u] = f.astype(np.float32)
    return utts, speakers, segs, feats


def _eval_set(utts, speakers, segs, tmp_path):
    item = tmp_path / "x.item"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\n" +
                    "".join(f"{u} {a:.2f} {b:.2f} {p} x y {s}\n" for u, s in zip(utts, speakers)
                            for a, b, p in segs[u][1:2]))
    return EvalSet(utts, speakers, segs, read_item_file(item))


def test_phone_probe_sees_planted_phones_on_held_out_speakers(tmp_path):
    utts, spk, segs, feats = _planted(phone_signal=4.0, speaker_signal=0.0)
    data = _eval_set(utts, spk, segs, tmp_path)
    cfg = ScorecardConfig(probe_iters=30)
    r = phone_probe(feats.__getitem__, 50.0, data, cfg)
    assert r.accuracy > 0.9 and r.chance < 0.4 and r.n_classes == 4
    assert r.n_test_groups == 16                          # 4 held-out speakers x 4 utterances
    utts, spk, segs, noise = _planted(phone_signal=0.0, speaker_signal=0.0)
    r0 = phone_probe(noise.__getitem__, 50.0, _eval_set(utts, spk, segs, tmp_path), cfg)
    assert r0.accuracy < r0.chance + 0.15                 # nothing to find: near chance


def test_speaker_probe_sees_planted_speakers(tmp_path):
    utts, spk, segs, feats = _planted(phone_signal=0.0, speaker_signal=2.0)
    data = _eval_set(utts, spk, segs, tmp_path)
    r = speaker_probe(feats.__getitem__, data, ScorecardConfig(speaker_test_frac=0.25))
    assert r.accuracy >= 0.75 and r.n_classes == 8 and r.n_test == 8 and math.isclose(r.chance, 1 / 8)
    utts, spk, segs, noise = _planted(phone_signal=0.0, speaker_signal=0.0)
    r0 = speaker_probe(noise.__getitem__, _eval_set(utts, spk, segs, tmp_path))
    assert r0.accuracy <= 0.5


def test_eval_set_checks_its_input(tmp_path):
    utts, spk, segs, _ = _planted(1.0, 1.0)
    items = _eval_set(utts, spk, segs, tmp_path).items
    with pytest.raises(ValueError, match="speaker labels"):
        EvalSet(utts, spk[:-1], segs, items)
    with pytest.raises(ValueError, match="no phone segments"):
        EvalSet(utts + ["nope"], spk + ["S0"], segs, items)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        EvalSet(utts[:2], ["S0", "S0"], segs, items)


# --- summaries and criteria --------------------------------------------------------------------

def _rows(model, stream, values: dict, rate=50.0):
    """values: {metric: [per-layer values]}."""
    return [{"model": model, "stream": stream, "layer": i, "metric": m, "value": v, "chance": 0.1, "rate_hz": rate}
            for m, vs in values.items() for i, v in enumerate(vs)]


def test_summarize_takes_the_most_informative_layer():
    rows = _rows("m", "content", {"probe_phone": [0.2, 0.5, 0.4], "abx_across": [30.0, 20.0, float("nan")],
                                  "probe_speaker": [0.3, 0.1, 0.2]})
    s = summarize(rows)[("m", "content")]
    assert (s["probe_phone"].value, s["probe_phone"].layer) == (0.5, 1)
    assert (s["abx_across"].value, s["abx_across"].layer) == (20.0, 1)
    assert (s["probe_speaker"].value, s["probe_speaker"].layer) == (0.3, 0)   # the most-leaking layer
    assert s["abx_within"].layer is None and math.isnan(s["abx_within"].value)


def test_summary_reports_abx_on_too_few_items_as_na_and_keeps_the_row():
    """A 5 Hz stream keeps 130 of 32,775 ABX items (2 cells): its 0.00 is no ABX of the stream."""
    rows = _rows("m", "other", {"abx_across": [0.0, 50.0], "abx_within": [12.0, 8.0]}, rate=5.0)
    for r in rows:
        r.update(n_items=130 if r["metric"] == "abx_across" or r["layer"] == 1 else 20000, n_items_total=32775)
    s = summarize(rows)[("m", "other")]
    assert s["abx_across"].layer is None and math.isnan(s["abx_across"].value)
    # a layer with enough items still counts, even when another layer has a lower score on too few
    assert (s["abx_within"].value, s["abx_within"].layer) == (12.0, 0)
    assert [r["value"] for r in rows if r["metric"] == "abx_across"] == [0.0, 50.0]


def test_scorecard_figure_leaves_out_abx_on_too_few_items_and_says_so(tmp_path, monkeypatch):
    """The figure draws what the tables show: a 5 Hz stream's ABX on 130 of 32,775 items is not a point
    (the tables print n/a); its probes are, and the caption names the stream left out."""
    import analysis.plots as plots

    rows = (_rows("jooci", "other", {"abx_across": [0.0, 50.0], "probe_speaker": [0.8, 0.7]}, rate=5.0)
            + _rows("jooci", "content", {"abx_across": [20.0, 21.0]}))
    for r in rows:
        r.update(n_items=130 if r["rate_hz"] == 5.0 else 30000, n_items_total=32775)
    seen = {}
    monkeypatch.setattr(plots, "plot_layers", lambda df, out, title=None, notes=(): seen.update(df=df, notes=notes))
    plots.plot_scorecard(rows, tmp_path / "sc")
    df = seen["df"]
    assert set(zip(df["stream"], df["metric"])) == {("other", "probe_speaker"), ("content", "abx_across")}
    assert len(seen["notes"]) == 1 and "ABX not drawn for" in seen["notes"][0] and "other" in seen["notes"][0]
    fig = plots.fig_layers(df, notes=seen["notes"])          # the caption line reaches the figure
    assert any("ABX not drawn" in t.get_text() for t in fig.texts)


def _summary(content, other=None, fb=(0.40, 20.0), ref_speaker=0.6, twin=None):
    """content/other: (phone, abx within, abx across, speaker)."""
    def d(v):
        return {m: Best(x, 0, 0.1) for m, x in zip(("probe_phone", "abx_within", "abx_across", "probe_speaker"), v)}
    s = {("m", "content"): d(content), ("fb50", "hidden_states"): d((fb[0], 5.0, fb[1], 0.9)),
         ("ref", "content"): d((0.5, 10.0, 15.0, ref_speaker))}
    if other:
        s[("m", "other")] = d(other)
    if twin:
        s[("t", "content")] = d(twin[0])
        if len(twin) > 1:
            s[("t", "other")] = d(twin[1])
    return s


def _verdicts(summ, twin=None):
    cr = criteria(summ, {"m": {"upstream": "jooci", "twin": twin, "rate": 50.0},
                         "ref": {"upstream": "hubert_compact", "twin": None, "rate": 50.0}}, {50.0: "fb50"}, "ref")
    return {c.name: c.passed for c in cr if c.model == "m"}


def test_criteria_pass_for_a_disentangled_model_and_fail_otherwise():
    good = _summary(content=(0.50, 8.0, 12.0, 0.20), other=(0.10, 40.0, 45.0, 0.95))
    v = _verdicts(good)
    assert v == {"phone_vs_fbank": True, "abx_vs_fbank": True, "other_speaker": True, "other_vs_content_speaker": True,
                 "other_vs_content_phone": True, "content_speaker_vs_reference": True}
    # the landed checkpoints' pattern: worse than fbank, other holds less speaker info than content
    bad = _summary(content=(0.44, 15.0, 25.0, 0.70), other=(0.30, 30.0, 35.0, 0.60))
    v = _verdicts(bad)
    assert v == {"phone_vs_fbank": False, "abx_vs_fbank": False, "other_speaker": False,
                 "other_vs_content_speaker": False, "other_vs_content_phone": True, "content_speaker_vs_reference": False}
    # exactly fbank + 0.05 passes (>=); a missing baseline is n/a, not a pass
    edge = _summary(content=(0.45, 8.0, 12.0, 0.2), other=(0.1, 40.0, 45.0, 0.95))
    assert _verdicts(edge)["phone_vs_fbank"] is True
    cr = criteria(edge, {"m": {"upstream": "jooci", "twin": None, "rate": 100.0}}, {50.0: "fb50"}, None)
    by = {c.name: c for c in cr}
    assert by["phone_vs_fbank"].passed is None and by["content_speaker_vs_reference"].passed is None


def test_twin_criterion_is_column_by_column():
    content, other = (0.50, 8.0, 12.0, 0.20), (0.10, 40.0, 45.0, 0.95)
    beaten = _summary(content, other, twin=[(0.30, 20.0, 30.0, 0.60), (0.30, 30.0, 30.0, 0.50)])
    assert _verdicts(beaten, twin="t")["twin"] is True
    # better everywhere except ABX within: FAIL, and the measured text names the column
    one_worse = _summary(content, other, twin=[(0.30, 7.0, 30.0, 0.60), (0.30, 30.0, 30.0, 0.50)])
    cr = [c for c in criteria(one_worse, {"m": {"upstream": "jooci", "twin": "t", "rate": 50.0}}, {}, None)
          if c.name == "twin"][0]
    assert cr.passed is False and "ABX within (%) 8 vs 7 WORSE" in cr.measured


# --- the command -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    import torch

    from upstream.checkpoint import save_checkpoint
    from upstream.registry import build_model, make_config

    d = tmp_path_factory.mktemp("ckpt") / "jooci-tiny"
    torch.manual_seed(1)
    cfg = make_config("jooci", "tiny")
    return save_checkpoint(build_model("jooci", cfg), d, name="jooci", config=cfg)


def _main(monkeypatch, *argv) -> int:
    """`harness ARGV` in this process (no second torch import), sys.argv as the console script sets it."""
    from harness.cli import main

    argv = [str(a) for a in argv]
    monkeypatch.setattr("sys.argv", ["harness", *argv])
    return main(argv)


def test_cli_scorecard_on_tiny(tiny_corpus, tiny_ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sc"
    assert _main(monkeypatch, "scorecard", "--upstreams", f"jooci={tiny_ckpt}", "--baselines", "fbank_no_cmvn",
                 "--corpus", tiny_corpus, "--layers", "0", "--out", out, "--cache", tmp_path / "cache", "--quiet") == 0
    assert "wrote" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    models = {r["model"] for r in rows}
    assert models == {f"jooci[jooci-tiny@{_h(tiny_ckpt)}]", f"jooci[random-twin@{_h(tiny_ckpt)}]",
                      "fbank_no_cmvn{100Hz}", "fbank_no_cmvn{50Hz}"}
    # every stream x layer 0 x metric, each with a chance level and sample sizes
    for m in models:
        streams = {r["stream"] for r in rows if r["model"] == m}
        assert streams == ({"content", "other"} if m.startswith("jooci") else {"hidden_states"})
        for s in streams:
            got = {r["metric"] for r in rows if r["model"] == m and r["stream"] == s}
            assert got == {"probe_phone", "abx_within", "abx_across", "probe_speaker"}
    for r in rows:
        assert r["chance"] and r["rate_hz"]
        if r["metric"].startswith("probe"):
            assert int(float(r["n_test"])) > 0 and int(float(r["n_classes"])) > 1
    rate = {r["model"]: float(r["rate_hz"]) for r in rows if r["stream"] in ("content", "hidden_states")}
    assert rate["fbank_no_cmvn{50Hz}"] == 50.0 and rate["fbank_no_cmvn{100Hz}"] == 100.0
    # the 50 Hz baseline is a real second measurement (pooled frames), not a copy of the 100 Hz one
    v = {(r["model"], r["metric"]): float(r["value"]) for r in rows}
    assert v[("fbank_no_cmvn{50Hz}", "abx_across")] != v[("fbank_no_cmvn{100Hz}", "abx_across")]
    meta = json.loads(out.with_suffix(".csv.meta.json").read_text())
    assert meta["command"].startswith("harness scorecard") and meta["commit"] and meta["machine"]
    md = out.with_suffix(".md").read_text()
    assert "## Issue 11's criteria" in md and ("| **PASS** |" in md or "| **FAIL** |" in md)
    for crit in ("content phone probe >= fbank_no_cmvn's", "other speaker probe >= 0.90",
                 "better than the random-init twin on every column"):
        assert crit in md
    assert meta["commit"] in md and out.with_suffix(".png").is_file() and out.with_suffix(".pdf").is_file()
    # an ABX row on too few of the items is n/a in the per-layer table as in the summary (the CSV keeps it)
    from analysis.samples import abx_coverage_too_low
    from analysis.scorecard import METRICS
    thin = [r for r in rows if abx_coverage_too_low({**r, "n_items": float(r["n_items"] or "nan"),
                                                     "n_items_total": float(r["n_items_total"] or "nan")})]
    assert thin and all(r["value"] != "" for r in thin)
    per_layer = md[md.index("## Every layer"):]
    for r in thin:
        line = next(x for x in per_layer.splitlines()
                    if x.startswith(f"| {r['model']} | {r['stream']} | {r['layer']} |"))
        assert line.split(" | ")[4 + METRICS.index(r["metric"])].strip(" |") == "n/a", line


def _h(ckpt) -> str:
    from upstream.facts import weights_hash

    return weights_hash(ckpt / "model.safetensors")[:8]


def test_cli_scorecard_bad_input(tiny_corpus, tmp_path, monkeypatch, capsys):
    for ups, msg in (("fbank", "'fbank' is not a DUET upstream"), ("jooci,jooci", "named twice"),
                     (f"jooci={tmp_path / 'nope'}", "no checkpoint for jooci"), ("jooci=random:huge", "huge")):
        assert _main(monkeypatch, "scorecard", "--upstreams", ups, "--corpus", tiny_corpus, "--out", tmp_path / "x",
                     "--cache", tmp_path / "c") == 2
        err = capsys.readouterr().err
        assert "harness scorecard: error:" in err and msg in err, err
    assert not (tmp_path / "x.md").exists()


def test_harness_abx_reads_the_unseen_split(tiny_corpus, tmp_path, monkeypatch):
    out = tmp_path / "abx.csv"
    assert _main(monkeypatch, "abx", "--upstream", "fbank_no_cmvn", "--corpus", tiny_corpus, "--split", "unseen",
                 "--out", out, "--cache", tmp_path / "cache", "--quiet") == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["metric"] for r in rows} == {"abx_within", "abx_across"}
    assert all(r["item_file"].endswith("unseen/abx.item") for r in rows)


def test_a_probe_verdict_decided_by_one_held_out_item_is_marked_a_close_call():
    """Two speaker probes on the same 120 test utterances one utterance apart (0.958 vs 0.950: the
    retrained Learn2Diss's other vs content) get the note; ten apart, or with unknown sizes, do not."""
    from analysis.scorecard import close_call

    def with_n(summ, n):
        return {k: {m: Best(b.value, b.layer, b.chance, n_test=n if m.startswith("probe_") else 0)
                    for m, b in v.items()} for k, v in summ.items()}

    close = with_n(_summary(content=(0.50, 8.0, 12.0, 115 / 120), other=(0.10, 40.0, 45.0, 116 / 120)), 120)
    cr = {c.name: c for c in criteria(close, {"m": {"upstream": "jooci", "twin": None, "rate": 50.0}}, {}, None)}
    assert cr["other_vs_content_speaker"].passed is True
    assert cr["other_vs_content_speaker"].measured.endswith("[1 of 120 held-out items apart]")
    assert cr["other_vs_content_speaker"].close and not cr["other_speaker"].close
    assert "apart" not in cr["other_speaker"].measured            # 0.967 vs 0.90: 8 items
    far = with_n(_summary(content=(0.50, 8.0, 12.0, 100 / 120), other=(0.10, 40.0, 45.0, 110 / 120)), 120)
    cr = {c.name: c for c in criteria(far, {"m": {"upstream": "jooci", "twin": None, "rate": 50.0}}, {}, None)}
    assert "apart" not in cr["other_vs_content_speaker"].measured
    assert close_call(Best(107 / 120, 0, 0.0, n_test=120), 0.90) == " [1 of 120 held-out items apart]"
    assert close_call(Best(0.5, 0, 0.0), 0.5) == ""                # no size known: no claim
    assert close_call(Best(0.5, 0, 0.0, n_test=120), 0.5, 240) == ""  # different test sets


def test_two_abx_errors_inside_each_others_interval_are_marked_a_tie():
    """hubert-compact's content ABX across 20.51 % [19.56, 20.99] against its random twin's 20.49 %
    [19.72, 21.01]: the twin comparison still says WORSE (and the criterion fails) but carries the tie
    mark; 15.17 % [14.60, 15.86] against the same twin does not. The interval comes from the CSV row."""
    from analysis.scorecard import abx_tie, summarize

    rows = [dict(model="m", stream="content", layer=2, metric="abx_across", value=20.51, chance=50.0,
                 ci_lo=19.56, ci_hi=20.99, n_items=30834, n_items_total=32775),
            dict(model="t", stream="content", layer=0, metric="abx_across", value=20.49, chance=50.0,
                 ci_lo=19.72, ci_hi=21.01, n_items=30834, n_items_total=32775)]
    s = summarize(rows)
    assert s[("m", "content")]["abx_across"].ci == (19.56, 20.99)
    assert abx_tie(s[("m", "content")]["abx_across"], s[("t", "content")]["abx_across"]).endswith(TIE_MARK)
    far = Best(15.17, 2, 50.0, ci=(14.60, 15.86))
    assert abx_tie(far, s[("t", "content")]["abx_across"]) == ""
    assert abx_tie(Best(20.51, 2, 50.0), s[("t", "content")]["abx_across"]) == ""   # no interval: no claim

    def with_ci(summ, half):
        return {k: {m: Best(b.value, b.layer, b.chance, ci=(b.value - half, b.value + half) if m.startswith("abx_")
                            else (float("nan"), float("nan"))) for m, b in v.items()} for k, v in summ.items()}

    summ = _summary(content=(0.50, 8.0, 20.51, 0.2), twin=((0.45, 9.0, 20.49, 0.9),))
    cr = {c.name: c for c in criteria(with_ci(summ, 0.6), {"m": {"upstream": "hubert_compact", "twin": "t",
                                                                  "rate": 50.0}}, {}, None)}
    assert cr["twin"].passed is False and cr["twin"].close
    assert "abx across" in cr["twin"].measured.lower() and TIE_MARK in cr["twin"].measured
    cr = {c.name: c for c in criteria(with_ci(summ, 0.005), {"m": {"upstream": "hubert_compact", "twin": "t",
                                                                    "rate": 50.0}}, {}, None)}
    assert cr["twin"].passed is False and not cr["twin"].close


def test_scorecard_random_preset_is_the_same_model_as_harness_runs(tmp_path):
    """`harness scorecard --upstreams jooci=random:tiny` scores the very weights `harness run --ckpt
    jooci=random:tiny` trains on (one seeded random init of the preset, upstream.checkpoint); an unknown
    preset is refused before any extraction, naming it."""
    from argparse import Namespace

    from harness.cli.scorecard import resolve_entries
    from harness.features.analysis_io import AnalysisError
    from harness.superb.sweep import random_checkpoint
    from upstream.facts import weights_hash

    def args(spec):
        return Namespace(upstreams=spec, cache=tmp_path / "cache", no_twins=True, twin_seed=0, baselines="")

    [e] = resolve_entries(args("jooci=random:tiny"))
    assert e.role == "model" and e.model.startswith("jooci[random-tiny@")
    run_ckpt = random_checkpoint("jooci", "tiny", tmp_path / "run")
    assert weights_hash(e.ckpt / "model.safetensors") == weights_hash(run_ckpt / "model.safetensors")
    with pytest.raises(AnalysisError, match="jooci=random:nope"):
        resolve_entries(args("jooci=random:nope"))
