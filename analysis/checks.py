"""Input checks shared by the analyses (ABX, CCA, probes): features must be finite, and a segment
must lie inside its file. Each error names the file / utterance (and the item file's line when
there is one) and says how to fix it, instead of giving a score that looks valid.

    >>> import numpy as np
    >>> check_finite(np.ones((3, 2)), "features of spk1-utt1")
    >>> check_finite(np.array([[1.0, np.nan]]), "features of spk1-utt1")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    analysis.checks.NonFiniteFeaturesError: features of spk1-utt1 hold 1 NaN and 0 Inf values (first in frame 0); ...
"""
from __future__ import annotations

import numpy as np

# How far (seconds) past a file's last feature frame a segment may end and still be inside the
# file: a model's frames stop up to one receptive field before the audio ends (HuBERT's CNN:
# 25 ms; a 10x-pooled stream: one of its frames), so allow one frame plus 50 ms.
END_SLACK_S = 0.05

FIX_FEATURES = ("re-extract them (a NaN in the audio or a diverged model gives these; check the audio "
                "with harness.preflight.check_audio)")


class AnalysisInputError(ValueError):
    """Bad input to an analysis (item file, features, segments); the message names it and the fix."""


class NonFiniteFeaturesError(AnalysisInputError):
    """Features with NaN or Inf values."""


class SegmentOutsideFileError(AnalysisInputError):
    """A segment (ABX item, aligned phone or word) that ends past the end of its file."""


def end_limit(n_frames: int, rate: float) -> float:
    """The latest offset (s) a segment of a file with ``n_frames`` frames at ``rate`` may have."""
    return n_frames / rate + 1.0 / rate + END_SLACK_S


def nonfinite_summary(x: np.ndarray) -> str | None:
    """None if ``x`` is all finite, else 'N NaN and M Inf values (first in frame i)'."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        return None
    finite = np.isfinite(x)
    if finite.all():
        return None
    nan = int(np.isnan(x).sum())
    inf = int(x.size - finite.sum()) - nan
    first = int(np.argwhere(~finite)[0][0]) if x.ndim else 0
    return f"{nan} NaN and {inf} Inf values (first in {'frame' if x.ndim == 2 else 'row'} {first})"


def check_finite(x: np.ndarray, what: str, fix: str = FIX_FEATURES) -> None:
    """Raise NonFiniteFeaturesError naming ``what`` if ``x`` holds NaN or Inf."""
    bad = nonfinite_summary(x)
    if bad is not None:
        raise NonFiniteFeaturesError(f"{what} hold {bad}; {fix}")
