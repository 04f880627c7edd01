"""Small-sample honesty: the analysis results carry their sample sizes; the warnings fire at the
sizes of the `tiny` corpus (read from a generated tiny corpus) and not at those of `small` (from its
corpus spec: dev = 10 speakers x 30 utterances); contradictory MI bounds are flagged, not reported.
Also the ABX speaker-bootstrap interval."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from analysis import samples
from analysis.abx import ABXConfig, _aggregate, _speaker_pair_table, abx_scores, build_plan, read_item_file, speaker_bootstrap
from analysis.cca import one_hot, pwcca_cv
from analysis.mi import MIEstimate, mi_bounds
from analysis.probes import probe_accuracy


def _dev_split(spk: list[str], seed: int = 0):
    """Random utterance-level features and, per utterance, 12 segments/frames (grouped)."""
    rng = np.random.default_rng(seed)
    n = len(spk)
    utt_feats = rng.normal(size=(n, 8)) + one_hot(spk) @ rng.normal(size=(len(set(spk)), 8))
    seg_group = np.repeat(np.arange(n), 12)
    seg_lab = rng.integers(0, 6, size=len(seg_group))
    seg_feats = rng.normal(size=(len(seg_group), 8)) + np.eye(6)[seg_lab] @ rng.normal(size=(6, 8))
    return utt_feats, seg_feats, seg_lab, seg_group


def _rows(spk: list[str]) -> list[dict]:
    """The results rows harness cca|probe would write for a dev split with these utterance speakers."""
    utt, seg, lab, grp = _dev_split(spk)
    r_spk = pwcca_cv(utt, one_hot(spk), groups=None, trials=1)
    r_ph = pwcca_cv(seg, one_hot(lab), groups=grp, trials=1)
    p_spk = probe_accuracy(utt, spk, stratify=True, device="cpu")
    p_ph = probe_accuracy(seg, lab, groups=grp, device="cpu")
    base = {"model": "m", "stream": "content", "layer": 0}
    rows = [{**base, "metric": "cca_speaker", "value": r_spk.mean, "dim_y": len(set(spk)), **r_spk.sizes()},
            {**base, "metric": "cca_phone", "value": r_ph.mean, "dim_y": 6, **r_ph.sizes()},
            {**base, "metric": "probe_speaker", "value": p_spk.accuracy, **p_spk.sizes()},
            {**base, "metric": "probe_phone", "value": p_ph.accuracy, **p_ph.sizes()}]
    return rows


def test_warnings_fire_on_tiny(tiny_corpus):
    from harness.features import analysis_io as hio

    utts = hio.corpus_utterances(tiny_corpus, "dev", None)
    spk = [r["speaker"] for r in utts]
    assert (len(utts), len(set(spk))) == (20, 2)          # the tiny dev split (if this changes, re-check the minimums)
    rows = _rows(spk)
    out = io.StringIO()
    samples.annotate(rows, file=out)
    w = {r["metric"]: r["warnings"] for r in rows}
    assert "2 speakers < 5" in w["cca_speaker"] and "held-out samples" in w["cca_speaker"]
    assert "held-out utterances < 10" in w["cca_phone"]
    assert "2 speakers < 5" in w["probe_speaker"] and "4 held-out utterances < 20" in w["probe_speaker"]
    assert "held-out utterances < 20" in w["probe_phone"]
    printed = out.getvalue()
    assert printed.count("warning:") >= 4 and "m content cca_speaker (layers 0)" in printed
    # MI on tiny: 3 held-out utterances (split_indices puts 16 + 1 of the 20 on the training side)
    _, seg, _, grp = _dev_split(spk)
    est = mi_bounds(seg, seg[:, ::-1] + 0.1, groups=grp, steps=5, batch=32, device="cpu")
    assert est.n_test_groups == 3
    assert any("held-out utterances < 10" in x for x in samples.row_warnings({**est.rows()[0]}))
    # ABX on tiny's item file: 2 speakers
    table = read_item_file(tiny_corpus / "abx" / "dev.item")
    assert len(set(table.speaker)) == 2
    assert "2 speakers < 5" in samples.row_warnings({"metric": "abx_across", "n_items": len(table),
                                                      "n_items_total": len(table), "n_speakers": 2})[0]


def test_no_warnings_at_small_sizes():
    from harness.corpus.spec import get_spec

    spec = get_spec("small")
    spk = [f"s{i}" for i in range(spec.n_dev) for _ in range(spec.utts_per_speaker)]
    assert len(spk) == 300
    rows = samples.annotate(_rows(spk), file=None)
    assert [r["warnings"] for r in rows] == [""] * 4, rows
    # ABX on small (sizes of results/analysis/abx-fbank.csv): 10 speakers, all items kept
    assert samples.row_warnings({"metric": "abx_across", "n_items": 10084, "n_items_total": 10162,
                                 "n_speakers": spec.n_dev}) == []
    # MI on small: 60 held-out utterances of 300
    assert samples.row_warnings({"metric": "mi_club", "n_test_groups": 60, "converged": True}) == []


def test_abx_items_dropped_warns():
    w = samples.row_warnings({"metric": "abx_within", "n_items": 50, "n_items_total": 10162})
    assert w == ["only 50 of 10162 items span a frame (< 50%)"]


def test_mi_not_converged_is_not_reported():
    bad = MIEstimate(club=47.9, infonce=-9.36, infonce_cap=5.5, n_train=16, n_test=4, n_test_groups=4)
    assert not bad.converged
    rows = bad.rows()
    assert all(np.isnan(r["value"]) for r in rows) and rows[1]["bound"] == -9.36
    assert any("not converged" in w for w in samples.row_warnings(rows[0]))
    assert not MIEstimate(1.0, 2.0, 5.5, 100, 100, 30).converged          # CLUB below InfoNCE
    good = MIEstimate(3.0, 2.0, 5.5, 100, 100, 30)
    assert good.converged and [r["value"] for r in good.rows()] == [3.0, 2.0]
    assert samples.row_warnings(good.rows()[0]) == []
    assert not samples.mi_converged(float("nan"), 1.0)
    # InfoNCE at its log K cap (results/analysis: learn2diss 5.34 of 5.55) is flagged as saturated
    sat = MIEstimate(270.7, 5.34, 5.5452, 15848, 4152, 60).rows()[1]
    assert samples.row_warnings(sat) == ["InfoNCE 5.34 nats is at its cap log K = 5.55: a lower bound only, "
                                         "MI may be far higher"]


def test_cca_and_probe_results_carry_sizes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    r = pwcca_cv(x, x @ rng.normal(size=(4, 3)), groups=np.repeat(np.arange(40), 5), trials=2)
    assert r.n_samples == 200 and r.n_test_groups == pytest.approx(4.0) and 15 <= r.n_test <= 25
    p = probe_accuracy(x, (x[:, 0] > 0).astype(int), groups=np.repeat(np.arange(40), 5), device="cpu")
    assert p.n_test_groups == 7 and p.n_test == 35 and p.sizes()["n_classes"] == 2     # 40 - 32 - 1 groups


# ------------------------------------------------------------------------------ ABX bootstrap

def _plan_and_errors(n_spk: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    phone, context, speaker = [], [], []
    for s in range(n_spk):
        for ph in range(3):
            for _ in range(3):
                phone.append(ph), context.append(0), speaker.append(s)
    plan = build_plan(phone, context, speaker, ABXConfig(seed=1))
    feats = [torch.as_tensor(rng.normal(size=(4, 3)) + p, dtype=torch.float32) for p in phone]
    return plan, feats


def test_speaker_bootstrap_interval():
    plan, feats = _plan_and_errors(6)
    s = abx_scores(feats, plan, ABXConfig(device="cpu", n_bootstrap=500))
    assert s.n_speakers == 6 and s.n_items == len(feats)
    for val, (lo, hi) in ((s.within, s.within_ci), (s.across, s.across_ci)):
        assert lo <= val <= hi and hi > lo
    rows = s.rows()
    assert rows[0]["ci_lo"] == s.within_ci[0] and rows[1]["n_speakers"] == 6
    # unit weights on every speaker reproduce Libri-light's aggregation
    err = np.random.default_rng(1).uniform(size=len(plan.within.speaker))
    table, mask = _speaker_pair_table(err, plan.within)
    by_pair = (table * mask).sum(0) / mask.sum(0)
    assert by_pair.mean() * 100 == pytest.approx(_aggregate(torch.as_tensor(err), plan.within, True))
    # identical speakers: no spread; one speaker: no interval
    same = (plan.within.phone_a * 3 + plan.within.phone_b) / 10.0        # every speaker errs alike
    lo, hi = speaker_bootstrap(same, plan.within, n_boot=200)
    assert hi - lo == pytest.approx(0.0, abs=1e-9)
    plan1, _ = _plan_and_errors(1)
    assert all(np.isnan(speaker_bootstrap(np.ones(len(plan1.within.speaker)), plan1.within)))
