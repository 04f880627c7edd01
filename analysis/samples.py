"""Small-sample honesty: the minimum sample sizes below which an analysis number is flagged.

Every analysis result (ABX, PWCCA, probes, MI) carries its sample sizes; :func:`row_warnings`
turns the sizes of one results row into human-readable warnings, and :func:`annotate` stores them
in a ``warnings`` column (``""`` when none) and prints each distinct warning once.

The minimums (named constants below) are set so that the ``tiny`` test corpus (dev split: 2
speakers x 10 utterances) is flagged and the ``small`` demo corpus (dev split: 10 speakers x 30
utterances) is not:

  minimum                                     why                                    tiny dev   small dev
  MIN_SPEAKERS = 5 (speaker PWCCA and probe,  2 speakers give held-out correlations of   2          10
    across-speaker ABX)                       ±1 and a one-dimensional speaker axis
  MIN_CCA_TEST_SAMPLES = 20 (per trial)       10 % test split                            speaker 2  speaker 30
  MIN_CCA_TEST_UTTS = 10 (grouped views)      segments of one utterance are dependent   2          30
  MIN_PROBE_TEST_UTTS = 20                    4 utterances move accuracy in 25 % steps   4          60
  MIN_ABX_KEPT_FRACTION = 0.5                 items spanning no frame are dropped        -          -
  MIN_MI_TEST_UTTS = 10                       as PWCCA                                   4          60
  MI_CAP_FRACTION = 0.9                       InfoNCE near log K is saturated            -          -

Example::

    rows = [{"metric": "cca_speaker", "n_test": 2, "n_test_groups": 2, "n_classes": 2, ...}]
    annotate(rows)            # prints "warning: ... 2 speakers < 5 ..." and sets rows[i]["warnings"]
"""
from __future__ import annotations

import math
import sys
from typing import Mapping, MutableMapping, Sequence, TextIO

MIN_SPEAKERS = 5                 # speaker PWCCA, speaker probe, across-speaker ABX
MIN_CCA_TEST_SAMPLES = 20        # held-out samples of one PWCCA trial
MIN_CCA_TEST_UTTS = 10           # held-out utterances of one PWCCA trial (grouped views)
MIN_PROBE_TEST_UTTS = 20         # held-out utterances of a probe
MIN_ABX_KEPT_FRACTION = 0.5      # fraction of the item file's items that span at least one frame
MIN_MI_TEST_UTTS = 10            # held-out utterances of an MI estimate
MI_CAP_FRACTION = 0.9            # InfoNCE at >= 90 % of its log K cap: saturated, only a lower bound

SPEAKER_METRICS = ("cca_speaker", "probe_speaker")


def _num(row: Mapping, key: str) -> float | None:
    v = row.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def mi_converged(club: float, infonce: float) -> bool:
    """False when the MI bounds contradict themselves: an InfoNCE lower bound below zero (the critic
    did not learn) or a CLUB upper bound below the InfoNCE lower bound (q(y|x) is not a good fit)."""
    if not (math.isfinite(club) and math.isfinite(infonce)):
        return False
    return infonce >= 0.0 and club >= infonce


def abx_coverage_too_low(row: Mapping) -> bool:
    """True for an ABX row computed on fewer than MIN_ABX_KEPT_FRACTION of its item file's items.

    Such a score is not comparable with another stream's: it is measured on a different, much smaller
    item set (the few phones long enough to span one of its frames; a 5 Hz stream keeps 130 of 32,775
    triphones, 2 cells). Summaries report it as n/a; the row keeps its value and warning."""
    if not str(row.get("metric", "")).startswith("abx"):
        return False
    kept, total = _num(row, "n_items"), _num(row, "n_items_total")
    return kept is not None and bool(total) and kept / total < MIN_ABX_KEPT_FRACTION


def row_warnings(row: Mapping) -> list[str]:
    """Warnings for one results row (keys as in the results CSVs), from the sample sizes it carries.

    Sizes read (each optional; a check runs only when its size is present):
    ABX ``n_items``, ``n_items_total``, ``n_speakers``; PWCCA ``n_test``, ``n_test_groups``,
    ``n_classes`` (or ``dim_y``); probes ``n_test_groups``, ``n_classes``; MI ``n_test_groups``,
    ``converged``, ``bound`` (the raw estimate).
    """
    metric = str(row.get("metric", ""))
    out: list[str] = []
    n_cls = _num(row, "n_classes")
    if n_cls is None and metric == "cca_speaker":
        n_cls = _num(row, "dim_y")
    if metric in SPEAKER_METRICS and n_cls is not None and n_cls < MIN_SPEAKERS:
        out.append(f"{int(n_cls)} speakers < {MIN_SPEAKERS}")
    if metric.startswith("abx"):
        kept, total = _num(row, "n_items"), _num(row, "n_items_total")
        if abx_coverage_too_low(row):
            out.append(f"only {int(kept)} of {int(total)} items span a frame (< {MIN_ABX_KEPT_FRACTION:.0%})")
        spk = _num(row, "n_speakers")
        if metric == "abx_across" and spk is not None and spk < MIN_SPEAKERS:
            out.append(f"{int(spk)} speakers < {MIN_SPEAKERS}")
    elif metric.startswith("cca"):
        nt, ng = _num(row, "n_test"), _num(row, "n_test_groups")
        if nt is not None and nt < MIN_CCA_TEST_SAMPLES:
            out.append(f"{nt:g} held-out samples < {MIN_CCA_TEST_SAMPLES}")
        if ng is not None and ng < MIN_CCA_TEST_UTTS and metric != "cca_speaker":
            out.append(f"{ng:g} held-out utterances < {MIN_CCA_TEST_UTTS}")
    elif metric.startswith("probe"):
        ng = _num(row, "n_test_groups")
        if ng is not None and ng < MIN_PROBE_TEST_UTTS:
            out.append(f"{int(ng)} held-out utterances < {MIN_PROBE_TEST_UTTS}")
    elif metric.startswith("mi"):
        ng = _num(row, "n_test_groups")
        if ng is not None and ng < MIN_MI_TEST_UTTS:
            out.append(f"{int(ng)} held-out utterances < {MIN_MI_TEST_UTTS}")
        if metric == "mi_infonce":
            v, cap = _num(row, "bound"), _num(row, "infonce_cap")
            v = _num(row, "value") if v is None else v
            if v is not None and cap and v >= MI_CAP_FRACTION * cap:
                out.append(f"InfoNCE {v:.2f} nats is at its cap log K = {cap:.2f}: a lower bound only, MI may be far higher")
        conv = row.get("converged")
        if conv is not None and str(conv).lower() in ("false", "0", "0.0"):
            out.append("MI bounds not converged (InfoNCE < 0 or CLUB < InfoNCE): not an MI estimate")
    return out


def annotate(rows: Sequence[MutableMapping], file: TextIO | None = sys.stderr) -> Sequence[MutableMapping]:
    """Set ``row["warnings"]`` ("; "-joined, "" when none) on every row and print each distinct
    (model, stream, metric, warning) once with the layers it applies to. Returns the rows."""
    seen: dict[tuple, list] = {}
    for r in rows:
        ws = row_warnings(r)
        r["warnings"] = "; ".join(ws)
        for w in ws:
            seen.setdefault((r.get("model", "?"), r.get("stream", "?"), r.get("metric", "?"), w), []).append(r.get("layer"))
    if file is not None:
        for (model, stream, metric, w), layers in seen.items():
            where = ",".join(str(x) for x in layers if x is not None)
            print(f"warning: {model} {stream} {metric}" + (f" (layers {where})" if where else "") + f": {w}", file=file)
    return rows
