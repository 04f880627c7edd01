"""docs/real_data.md, followed as written on the tiny synthetic corpus (support files deleted).

The page's bash blocks run unchanged in bash, with the five variables of its section 2 pointing at
the tiny corpus. `harness` and `python` on PATH are small shims: `harness prepare` runs for real;
`harness run` gets `--dry-run` (with --runslow: it trains fbank's PR and SID cells for 2 steps, then
`harness report` renders the table); `python run_downstream.py -m train ...` lines are recorded and
each goes through the bridge's validation of everything s3prl will open (``harness.superb.bridge.prepare``),
without training; `-m evaluate` lines (which need trained checkpoints) are skipped.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.corpus.layout import ER_FOLDS, SPLITS, CorpusLayout

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "real_data.md"
VARS = ("LIBRI", "VOX", "IEMOCAP", "LEXICON", "PREP")
TASK_OF = {"voxceleb1": "sid", "sv_voxceleb1": "asv", "emotion": "er", "ctc": "pr", "asr": "asr"}

HARNESS_SHIM = r"""#!/usr/bin/env bash
set -e
case "$1" in
  prepare) shift; exec "$DUET_PY" "$DUET_ROOT/harness/cli/prepare.py" --no-progress "$@" ;;
  run)
    if [ "$DUET_DOCS_MODE" = slow ]; then
      exec "$DUET_PY" -m harness.cli "$@" --tasks pr,sid --upstreams fbank --steps 2 --results "$DUET_RESULTS"
    fi
    exec "$DUET_PY" -m harness.cli "$@" --dry-run ;;
  report)
    if [ "$DUET_DOCS_MODE" = slow ]; then
      shift; exec "$DUET_PY" -m harness.cli report "$DUET_RESULTS/${1#results/}" --no-plots
    fi
    echo "(docs test: harness report skipped, no results in a dry run)"; exit 0 ;;
  *) exec "$DUET_PY" -m harness.cli "$@" ;;
esac
"""

PYTHON_SHIM = r"""#!/usr/bin/env bash
if [ "$1" = run_downstream.py ]; then
  shift
  case " $* " in *" -m evaluate "*) echo "(docs test: skipped, needs a trained checkpoint: $*)"; exit 0 ;; esac
  # recorded here, validated by the test in one process (importing s3prl once)
  { printf '%s\037' "$@"; printf '\036'; } >> "$DUET_ARGV_LOG"; exit 0
fi
exec "$DUET_PY" "$@"
"""


def doc_blocks() -> dict[str, str]:
    text = DOC.read_text()
    found = dict(re.findall(r"<!-- docs-test: (\w+) -->\n```bash\n(.*?)```", text, flags=re.S))
    assert set(found) == {"vars", "prepare", "harness", "s3prl"}, f"{DOC}: tagged blocks {sorted(found)}"
    return found


def test_vars_block_names_the_five_paths():
    lines = [ln for ln in doc_blocks()["vars"].splitlines() if ln.strip()]
    assert [ln.split("=")[0] for ln in lines] == list(VARS)


def run_doc(tmp_path: Path, tiny_corpus: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path]:
    root = tmp_path / "tiny"
    shutil.copytree(tiny_corpus, root, copy_function=os.link)
    lay = CorpusLayout(root)
    lexicon = tmp_path / "lexicon.txt"
    shutil.copyfile(lay.lexicon, lexicon)
    gone = [lay.char_dict, lay.lexicon, lay.phone_vocab, lay.veri_dev]
    gone += [p for s in SPLITS for p in (lay.bucket_csv(s), lay.phone_transcripts(s), lay.libriphone_csv(s))]
    gone += [lay.iemocap_meta_json(k, part) for k in ER_FOLDS for part in ("train", "test")]
    for p in gone:
        p.unlink()
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in (("harness", HARNESS_SHIM), ("python", PYTHON_SHIM)):
        (shims / name).write_text(body)
        (shims / name).chmod(0o755)
    prep = tmp_path / "prep"
    values = {"LIBRI": lay.librispeech, "VOX": lay.voxceleb1, "IEMOCAP": lay.iemocap, "LEXICON": lexicon, "PREP": prep}
    blocks = doc_blocks()
    script = "set -euo pipefail\n" + "".join(f"{k}={str(v)!r}\n" for k, v in values.items()) \
        + "\n".join(blocks[b] for b in ("prepare", "harness", "s3prl"))
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "DUET_PY": sys.executable,
           "DUET_ROOT": str(ROOT), "DUET_DOCS_MODE": mode, "DUET_RESULTS": str(tmp_path / "results"),
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DUET_ARGV_LOG": str(tmp_path / "run_downstream.argv")}
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"docs/real_data.md failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, prep


def test_real_data_page_as_written(tiny_corpus, tmp_path):
    runs_before = sorted((ROOT / "runs").iterdir()) if (ROOT / "runs").is_dir() else None
    proc, prep = run_doc(tmp_path, tiny_corpus, "dry")
    out = proc.stdout
    # section 3: every support file, and the datasets.yaml the rest reads
    assert (prep / "datasets.yaml").is_file() and (prep / "len_for_bucket" / "train-clean-100.csv").is_file()
    assert (prep / "meta_data" / "Session5" / "test_meta_data.json").is_file()
    assert (prep / "dev_meta_data" / "dev_meta_data.txt").is_file()
    # section 4: the harness sweep validates against the prepared data and lists every cell
    assert "harness run: 15 cells" in out, out[-2000:]
    # section 5: each training command passes s3prl-side validation of every path it will open
    from harness.superb.bridge import prepare

    records = (tmp_path / "run_downstream.argv").read_text().split("\x1e")[:-1]
    argvs = [r.split("\x1f")[:-1] for r in records]
    seen = Counter()
    for argv in argvs:
        args, _ = prepare(argv)
        assert args.mode == "train" and args.config == f"downstream_configs/real/{TASK_OF[args.downstream]}.yaml"
        seen[args.downstream] += 1
    assert seen == {"voxceleb1": 1, "ctc": 1, "asr": 1, "emotion": 5, "sv_voxceleb1": 1}
    assert out.count("(docs test: skipped, needs a trained checkpoint") == 9
    # nothing written into the checkout's runs/ (a developer's checkout may already have one)
    assert (sorted((ROOT / "runs").iterdir()) if (ROOT / "runs").is_dir() else None) == runs_before


@pytest.mark.slow
def test_real_data_page_trains_two_cells(tiny_corpus, tmp_path):
    proc, _ = run_doc(tmp_path, tiny_corpus, "slow")
    assert (tmp_path / "results" / "superb_real.csv").is_file()
    md = (tmp_path / "results" / "superb_real.md").read_text()
    assert "pr" in md and "sid" in md
