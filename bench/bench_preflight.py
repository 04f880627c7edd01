"""Pre-flight audio check speed on a generated corpus (goal on 2 cores: first run < 30 s, cached < 2 s).

    python bench/bench_preflight.py --corpus corpora/small [--workers 2] [--baseline]

Checks every audio file that ``harness run`` (sid, asv, er, pr, asr), ``harness abx`` (dev and test
items), ``harness cca|probe`` (dev split) and ``harness pretrain`` read, as ``harness.preflight``
lists them, and reports

  * listing: building the file lists from iden_split.txt, the trial lists, the IEMOCAP meta data,
    the bucket tables, the item files and the manifest;
  * first run: no cache, every file decoded (hard links once), ``--workers`` threads;
  * cached run: the same check again with the cache the first run wrote (only stat + JSON), and
    with the listing added (what a command pays when nothing changed);
  * control: ``os.stat`` of every file alone (the floor of the cached run), and with
    ``--baseline`` the first run with 1 worker (the parallel speed-up);
  * the machine: cores, load average before and after, and audio decoded per wall second.

The corpus files are usually in the OS page cache (just generated or read); a cold disk is slower.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_FIRST_S, GOAL_CACHED_S = 30.0, 2.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def all_files(corpus: Path):
    from harness.corpus.layout import CorpusLayout
    from harness.preflight import files_for_abx, files_for_pretrain, files_for_split, files_for_tasks

    lay = CorpusLayout(corpus)
    fl = files_for_tasks(["sid", "asv", "er", "pr", "asr"], corpus)
    for split in ("dev", "test"):
        fl = fl + files_for_abx(lay.abx_item(split), lay.abx_wav_dir(split))
    return fl + files_for_split(corpus, "dev") + files_for_pretrain(corpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("corpora/small"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline", action="store_true", help="also time a first run with 1 worker")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here too")
    args = ap.parse_args()

    from harness.corpus.layout import CorpusLayout
    from harness.preflight import _load_cache, check_audio

    CorpusLayout(args.corpus).check()
    import analysis.abx  # noqa: F401 - imported before timing: a command has them loaded already
    import pretrain.data  # noqa: F401
    load0 = os.getloadavg()
    c0, t = _cpu(), time.perf_counter()
    files = all_files(args.corpus)
    listing, listing_cpu = time.perf_counter() - t, _cpu() - c0
    t = time.perf_counter()
    for p in files.files:
        os.stat(p)
    stat_s = time.perf_counter() - t
    out: dict = {"corpus": str(args.corpus), "files": len(files), "list_problems": len(files.problems),
                 "unique_inodes": len({(os.stat(p).st_dev, os.stat(p).st_ino) for p in files.files}),
                 "workers": args.workers, "cores": os.cpu_count(), "listing_s": listing, "listing_cpu_s": listing_cpu,
                 "stat_only_s": stat_s}
    with tempfile.TemporaryDirectory(prefix="duet-bench-preflight-") as tmp:
        cache = Path(tmp) / "preflight.json"
        if args.baseline:
            c0, t = _cpu(), time.perf_counter()
            r = check_audio(files, workers=1, progress=False)
            out["first_1worker_s"], out["first_1worker_cpu_s"] = time.perf_counter() - t, _cpu() - c0
        c0, t = _cpu(), time.perf_counter()
        first = check_audio(files, workers=args.workers, cache_path=cache, progress=False)
        out["first_s"], out["first_cpu_s"] = time.perf_counter() - t, _cpu() - c0
        out["decoded"] = first.decoded
        facts = _load_cache(cache)
        out["audio_h"] = sum(f["frames"] / f["rate"] for f in {(f["size"], f["mtime_ns"], k): f for k, f in
                                                                facts.items() if "frames" in f}.values()) / 3600
        out["cache_bytes"] = cache.stat().st_size
        c0, t = _cpu(), time.perf_counter()
        cached = check_audio(files, workers=args.workers, cache_path=cache, progress=False)
        out["cached_s"], out["cached_cpu_s"] = time.perf_counter() - t, _cpu() - c0
        out["cached_decoded"] = cached.decoded
        out["problems"] = len(first.problems)
    out["load_before"], out["load_after"] = list(load0), list(os.getloadavg())
    out["first_ok"] = out["first_s"] < GOAL_FIRST_S
    out["cached_ok"] = out["cached_s"] < GOAL_CACHED_S

    print(f"pre-flight check of {args.corpus}: {out['files']} files ({out['unique_inodes']} distinct, "
          f"{out['audio_h']:.2f} h of audio listed once per path), {out['problems']} problems, "
          f"{os.cpu_count()} cores, load {load0[0]:.2f} -> {out['load_after'][0]:.2f}")
    print(f"  listing the files          {listing:7.2f} s wall, {listing_cpu:.2f} s CPU")
    print(f"  first run ({args.workers} workers)      {out['first_s']:7.2f} s wall, {out['first_cpu_s']:.2f} s CPU, "
          f"{out['decoded']} decoded   goal < {GOAL_FIRST_S:g} s: {'met' if out['first_ok'] else 'MISSED'}")
    if args.baseline:
        print(f"  first run (1 worker)       {out['first_1worker_s']:7.2f} s wall   (control: parallel speed-up "
              f"{out['first_1worker_s'] / out['first_s']:.2f}x)")
    print(f"  cached run                 {out['cached_s']:7.2f} s wall, {out['cached_cpu_s']:.2f} s CPU, "
          f"{out['cached_decoded']} decoded   "
          f"goal < {GOAL_CACHED_S:g} s: {'met' if out['cached_ok'] else 'MISSED'}")
    print(f"  cached, listing included   {listing + out['cached_s']:7.2f} s wall, "
          f"{listing_cpu + out['cached_cpu_s']:.2f} s CPU   (what a command pays when nothing changed)")
    print(f"  control: stat() every file {stat_s:7.2f} s   cache file {out['cache_bytes'] / 1e6:.2f} MB")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if out["first_ok"] and out["cached_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
