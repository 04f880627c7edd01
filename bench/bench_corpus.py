"""Corpus synthesis speed: seconds of audio per wall second per core (goal >= 300x real time).

    python bench/bench_corpus.py [--utts 300] [--workers 1] [--keep DIR]

Generates a corpus of the `small` spec cut to ``--utts`` utterances (same code path as
`harness corpus make`: synthesis, resampling, wav + flac, alignments, records, every layout file,
manifest, corpus.json) with ``--workers`` processes, and reports

  * end-to-end: audio seconds / wall seconds / workers  (the number the goal is about)
  * CPU time (all processes): audio seconds / CPU seconds, the per-core speed on an idle machine
  * reference measured in the same run: espeak alone (library call, 22 kHz, no files) on the
    same sentences/voices in this process, wall and CPU, and end-to-end as a fraction of it.

Run it on an otherwise idle machine; on a shared machine the numbers are lower bounds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 300.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utts", type=int, default=300, help="utterances to generate (default 300, ~17 min audio)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", default=None, help="write the corpus here and keep it (default: a temp dir)")
    args = ap.parse_args()

    from harness.corpus import make_corpus
    from harness.corpus.layout import CorpusLayout
    from harness.corpus.plan import make_plan
    from harness.corpus.spec import SIZES
    from harness.corpus.synth import get_engine

    per = SIZES["small"].utts_per_speaker
    n_spk = max(12, -(-args.utts // per))
    spec = dataclasses.replace(SIZES["small"], name="bench", n_speakers=n_spk, utts_per_speaker=max(1, args.utts // n_spk),
                               n_dev=2, n_test=2, n_asv_test=3, n_iemocap=10)
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="duet-bench-corpus-")) / "c"
    try:
        import resource

        def cpu() -> float:
            r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            return sum(x.ru_utime + x.ru_stime for x in r)

        c0, t0 = cpu(), time.perf_counter()
        make_corpus(out, size=spec, seed=0, workers=args.workers, progress=False)
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
        gen = json.loads(CorpusLayout(out).generation_json.read_text())
        info = CorpusLayout(out).check()
        audio_s = info["hours"] * 3600
        e2e = audio_s / wall / args.workers

        # reference: espeak alone on the first 60 utterances, this process, no files
        plan = make_plan(spec, 0)
        eng = get_engine()
        sub = plan.utts[:60]
        t1, p1 = time.perf_counter(), time.process_time()
        n22 = 0
        for u in sub:
            a, _ = eng.raw(u.sentence, plan.voices[u.speaker], u.rate, u.pitch, u.range, u.volume)
            n22 += len(a)
        ref = (n22 / eng.rate) / (time.perf_counter() - t1)
        ref_cpu = (n22 / eng.rate) / (time.process_time() - p1)
        print(f"machine: {os.cpu_count()} cores; corpus: {info['counts']['utterances']} utterances, "
              f"{audio_s:.0f} s audio, workers {args.workers}")
        print(f"end-to-end  : {audio_s:.0f} s audio in {wall:.2f} s wall = {e2e:.0f}x real time per core "
              f"(goal {GOAL:.0f}x: ratio {e2e / GOAL:.2f}); synthesis {gen['synth_s']:.2f} s, layouts "
              f"{wall - gen['synth_s']:.2f} s")
        print(f"cpu time    : {cpu_s:.2f} s CPU = {audio_s / cpu_s:.0f}x real time per CPU-second "
              f"(ratio {audio_s / cpu_s / GOAL:.2f}; = per core on an idle machine, unaffected by other load)")
        print(f"reference   : espeak synthesis alone (same process, same sentences, no files): {ref:.0f}x wall, "
              f"{ref_cpu:.0f}x per CPU-second; end-to-end / reference = {e2e / ref:.2f} (wall), "
              f"{audio_s / cpu_s / ref_cpu:.2f} (CPU)")
        du = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        print(f"disk        : {du:.0f} MiB ({du / (audio_s / 3600):.0f} MiB per audio hour, hard links counted once per path)")
    finally:
        if not args.keep:
            shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
