"""analysis/checks.py and its use by the CCA / probe inputs (analysis/views.py, cca.py, probes.py):
NaN/Inf features and segments past the end of their utterance are refused, naming the utterance,
instead of giving a score that looks valid."""
import numpy as np
import pytest

from analysis.cca import fit_cca, pwcca_cv
from analysis.checks import (AnalysisInputError, NonFiniteFeaturesError, SegmentOutsideFileError, check_finite,
                             end_limit)
from analysis.probes import probe_accuracy
from analysis.views import Segment, paired_frames, pooled_segments, utterance_means


def _store(nan_in=None, frames=20, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    feats = {u: rng.normal(size=(frames, dim)) for u in ("u1", "u2", "u3")}
    if nan_in:
        feats[nan_in][7, 1] = np.nan
    return feats


def test_check_finite_counts_and_locates():
    x = np.zeros((5, 2))
    check_finite(x, "x")
    x[3, 0], x[4, 1] = np.nan, -np.inf
    with pytest.raises(NonFiniteFeaturesError, match=r"x hold 1 NaN and 1 Inf values \(first in frame 3\); re-extract"):
        check_finite(x, "x")
    assert issubclass(NonFiniteFeaturesError, AnalysisInputError) and issubclass(AnalysisInputError, ValueError)
    assert end_limit(50, 50.0) == pytest.approx(1.0 + 0.02 + 0.05)


@pytest.mark.parametrize("fn", ["pooled", "means", "paired"])
def test_views_refuse_nonfinite_features_naming_the_utterance(fn):
    feats = _store(nan_in="u2")
    segs = [Segment(u, 0.0, 0.2, "a") for u in feats]
    with pytest.raises(NonFiniteFeaturesError, match="features of utterance u2 hold 1 NaN"):
        if fn == "pooled":
            pooled_segments(feats.__getitem__, segs, rate=50.0)
        elif fn == "means":
            utterance_means(feats.__getitem__, list(feats))
        else:
            paired_frames(feats.__getitem__, 50.0, _store().__getitem__, 5.0, list(feats))


def test_segment_past_the_end_is_refused():
    feats = _store()  # 20 frames at 50 Hz: 0.4 s
    good = [Segment("u1", 0.1, 0.2, "a"), Segment("u2", 0.3, 0.42, "b")]
    x, labels, groups = pooled_segments(feats.__getitem__, good, rate=50.0)
    assert x.shape == (2, 3) and labels == ["a", "b"]
    bad = good + [Segment("u3", 998.0, 999.0, "c")]
    with pytest.raises(SegmentOutsideFileError, match=r"1 segment\(s\).*u3 c 998-999 s \(its features end at 0.40 s\)"):
        pooled_segments(feats.__getitem__, bad, rate=50.0)


def test_empty_utterance_features_are_refused():
    feats = {"u1": np.zeros((0, 3))}
    with pytest.raises(AnalysisInputError, match=r"utterance u1 have shape \(0, 3\)"):
        utterance_means(feats.__getitem__, ["u1"])


def test_cca_and_probe_refuse_nonfinite_inputs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), rng.normal(size=(60, 3))
    fit_cca(x, y)
    x[10, 2] = np.inf
    with pytest.raises(NonFiniteFeaturesError, match=r"CCA view x hold 0 NaN and 1 Inf values \(first in frame 10\)"):
        fit_cca(x, y)
    with pytest.raises(NonFiniteFeaturesError, match="CCA view x"):
        pwcca_cv(x, y)
    labels = np.arange(60) % 3
    with pytest.raises(NonFiniteFeaturesError, match="probe input features"):
        probe_accuracy(x, labels, device="cpu")
    with pytest.raises(ValueError, match="59 labels for 60 feature rows"):
        probe_accuracy(y, labels[:59], device="cpu")
