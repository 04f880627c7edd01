"""Re-render a SUPERB report's figures from its results CSV with analysis.plots (until `harness report`
calls these functions itself).

  python scripts/replot_superb.py results/superb_small.csv results/superb_small/plots --corpus-size small

Writes bars, matrix and layer_weights as .png + .pdf into the folder. Chance lines: SID 1/speakers of
the corpus size (small: 100 speakers, measured majority 0.0100 in results/bridge_fbank.md), ER the
majority class of an IEMOCAP fold (0.40, results/bridge_fbank.md), PR/ASR the error rate of an empty
output (PER 1.0, WER 100 %).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import plots  # noqa: E402

CHANCE_LABEL = "chance (accuracy: majority class; error rates: empty output)"


def chance_levels(size: str) -> dict[str, float]:
    from harness.corpus.spec import get_spec

    return {"sid": 1.0 / get_spec(size).n_speakers, "er": 0.40, "pr": 1.0, "asr": 100.0}


def main(argv=None) -> int:
    import pandas as pd

    from harness.superb import report

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", type=Path, help="harness results CSV")
    p.add_argument("plots", type=Path, help="folder for bars/matrix/layer_weights .png + .pdf")
    p.add_argument("--corpus-size", default="small", help="corpus size of the cells (for the SID chance level)")
    a = p.parse_args(argv)
    df = pd.read_csv(a.csv)
    tasks = report.tasks_of(df)
    hib = {t: report._hib(df, t) for t in tasks}
    heads = {t: report._metric_header(df, t) for t in tasks}
    out = [plots.plot_superb_bars(df, a.plots / "bars", chance_levels(a.corpus_size), tasks, CHANCE_LABEL),
           plots.plot_superb_matrix(report.disentanglement_matrix(df), hib, a.plots / "matrix", heads)]
    weights = [{"task": r["task"], "upstream": r["upstream"], "stream": report.stream_label(r), "weights": w}
               for _, r in df.iterrows() if (w := report.layer_weights_of(r)) and len(w) > 1]
    if weights:
        out.append(plots.plot_superb_layer_weights(weights, a.plots / "layer_weights", tasks))
    for png, pdf in out:
        print(f"wrote {png} and {pdf.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
