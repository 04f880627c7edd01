"""The model card's scorecard section (scripts/bundle_checkpoint.py) marks small-sample values."""
import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bundle_checkpoint", ROOT / "scripts" / "bundle_checkpoint.py")
bundle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bundle)

FIELDS = ["model", "role", "upstream", "stream", "layer", "rate_hz", "metric", "value", "chance", "n_test_groups",
          "warnings"]


def _row(model, role, upstream, stream, metric, value, warnings=""):
    return {"model": model, "role": role, "upstream": upstream, "stream": stream, "layer": 0, "rate_hz": 5.0,
            "metric": metric, "value": value, "chance": 0.5, "n_test_groups": 240, "warnings": warnings}


def test_card_stars_a_value_with_a_small_sample_warning(tmp_path):
    """An ABX across speaker of 0.000 from 130 of 32,775 items (a 5 Hz stream) printed bare in the cards
    as if measured; it carries the scorecard's star and its warning under the table."""
    m = "jooci[jooci-compact@a483ea10]"
    rows = [_row(m, "model", "jooci", "other", "probe_phone", 0.35),
            _row(m, "model", "jooci", "other", "abx_across", 0.0, "only 130 of 32775 items span a frame (< 50%)"),
            _row(m, "model", "jooci", "other", "probe_speaker", 0.82)]
    p = tmp_path / "sc.csv"
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    text = bundle.scorecard(p, "a483ea10b95e")
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {m} | other"))
    assert "0.000 (L0)*" in line and "0.820 (L0) |" in line
    assert "only 130 of 32775 items span a frame" in text.split(line)[1]
