"""``make_corpus``: plan -> synthesise (parallel, resumable) -> write every layout -> corpus.json.

Resumption: ``plan.json`` (size, seed, spec) is written first; an utterance whose record exists is
not synthesised again; the layout text files are rewritten from the records; ``corpus.json`` is
written last and atomically, so it exists only for a complete corpus. Synthesis is a pure function
of the plan, so the bytes do not depend on ``workers`` or on where a run was interrupted.

Then the unseen-voices evaluation set (``unseen.py``) is generated into ``unseen/`` when the size has
one: after the corpus proper, so a complete corpus made before the set existed gets it added and
keeps every other byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

from .abx import write_abx
from upstream.facts import progress_bar, unwritable_dir

from .fileio import atomic_write_json
from .iemocap import write_iemocap
from .layout import FORMAT, LIBRI_SPLITS, SPLITS, CorpusError, CorpusLayout, read_records
from .librispeech import write_librispeech
from .manifest import write_manifest
from .plan import Plan, make_plan
from .spec import SAMPLE_RATE, CorpusSpec, get_spec
from .styles import STYLES
from .text import SENTENCES_PATH
from .unseen import make_unseen, unseen_meta
from .voxceleb import write_voxceleb

GENERATOR_VERSION = 1


class GenerationInterrupted(CorpusError):
    """Raised by the ``stop_after`` test hook (and stands for any interruption)."""


def _prepare_dir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CorpusError(f"cannot create corpus directory {root} ({e.strerror}): choose a writable --out") from None
    if not root.is_dir():
        raise CorpusError(f"{root} exists and is not a directory: choose another --out")
    why = unwritable_dir(root)
    if why:
        raise CorpusError(f"corpus directory {root} is not writable ({why}): choose a writable --out")


def _plan_meta(spec: CorpusSpec, seed: int) -> dict:
    return {"format": FORMAT, "generator_version": GENERATOR_VERSION, "size": spec.name, "seed": seed,
            "spec": spec.to_dict()}


def _synthesize(lay: CorpusLayout, plan: Plan, workers: int, progress: bool, stop_after: int | None) -> int:
    """Synthesise every speaker without a record; returns the number of utterances synthesised."""

    from .worker import init_worker, run_job

    by_speaker: dict[int, list] = {}
    for u in plan.utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    todo = [i for i, us in by_speaker.items() if not lay.speaker_record(us[0].libri_spk).is_file()]
    if not todo:
        return 0
    total = sum(len(by_speaker[i]) for i in todo)
    bar = progress_bar(total=total, enabled=progress, desc=f"corpus {plan.spec.name}", unit="utt", smoothing=0.1)
    done = 0
    try:
        if workers <= 1:
            init_worker(str(lay.root), plan.voices, by_speaker)
            for i in todo:
                if stop_after is not None and done >= stop_after:
                    raise GenerationInterrupted(f"stopped after {done} utterances (test hook)")
                n = run_job(i)
                done += n
                bar.update(n)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            pool = ctx.Pool(min(workers, len(todo)), initializer=init_worker,
                            initargs=(str(lay.root), plan.voices, by_speaker))
            try:
                for n in pool.imap_unordered(run_job, todo, chunksize=1):
                    done += n
                    bar.update(n)
                    if stop_after is not None and done >= stop_after:
                        raise GenerationInterrupted(f"stopped after {done} utterances (test hook)")
                pool.close()  # workers exit normally (and remove their espeak data folders)
                pool.join()
            finally:
                pool.terminate()
    finally:
        bar.close()
    return done


def _load_records(lay: CorpusLayout, plan: Plan) -> dict[str, dict]:
    records = read_records([lay.speaker_record(spk) for spk in dict.fromkeys(u.libri_spk for u in plan.utts)],
                           f"delete it and rerun `harness corpus make --size {plan.spec.name} --out {lay.root}`")
    missing = [u.utt_id for u in plan.utts if u.utt_id not in records]
    if missing:
        raise CorpusError(f"{len(missing)} utterances (e.g. {missing[0]}) have no record under {lay.utterances}; "
                          f"rerun `harness corpus make --size {plan.spec.name} --out {lay.root}`")
    return records


def _summary(plan: Plan, records: dict[str, dict], parts: dict) -> dict:
    secs = {s: sum(records[u.utt_id]["num_samples"] for u in plan.utts if u.split == s) / SAMPLE_RATE for s in SPLITS}
    sha = hashlib.sha256(SENTENCES_PATH.read_bytes()).hexdigest()[:16]
    counts = {"speakers": plan.spec.n_speakers, "utterances": len(plan.utts)}
    counts.update({f"{s}_speakers": len({u.speaker for u in plan.utts if u.split == s}) for s in SPLITS})
    counts.update({f"{s}_utterances": sum(1 for u in plan.utts if u.split == s) for s in SPLITS})
    counts.update({k: v for k, v in parts.items() if k != "phones"})
    return {
        **_plan_meta(plan.spec, plan.seed),
        "sample_rate": SAMPLE_RATE,
        "hours": round(sum(secs.values()) / 3600, 4),
        "hours_per_split": {s: round(v / 3600, 4) for s, v in secs.items()},
        "counts": counts,
        "libri_splits": LIBRI_SPLITS,
        "styles": {k: v.er_label for k, v in STYLES.items()},
        "phones": parts["phones"],
        "sentences": {"file": "harness/corpus/data/sentences.txt", "sha256_16": sha},
        "utterances": {s: [u.utt_id for u in plan.utts if u.split == s] for s in SPLITS},
    }


def make_corpus(out_dir: str | Path, size: str | CorpusSpec = "tiny", seed: int = 0, workers: int = 1, *,
                progress: bool = True, stop_after: int | None = None) -> Path:
    """Generate (or finish, or just return) the corpus at ``out_dir``; returns its root.

    ``size``: a name in ``SIZES`` or a ``CorpusSpec``. ``stop_after``: test hook that interrupts
    synthesis after that many utterances (raises ``GenerationInterrupted``).
    """
    spec = size if isinstance(size, CorpusSpec) else get_spec(size)
    root = Path(out_dir).expanduser().resolve()
    lay = CorpusLayout(root)
    meta = _plan_meta(spec, seed)
    if _existing(lay, meta) and _unseen_done(lay, spec, seed):  # checked before touching anything, and again under the lock
        return root
    _prepare_dir(root)
    with _exclusive(root):
        if not _existing(lay, meta):  # else another process finished it while we waited
            _generate(lay, spec, seed, workers, progress, stop_after)
        make_unseen(lay, spec, seed, progress)
        return root


def _unseen_done(lay: CorpusLayout, spec: CorpusSpec, seed: int) -> bool:
    if spec.unseen is None:
        return True
    try:
        return lay.unseen_info_json.is_file() and json.loads(lay.unseen_plan_json.read_text()) == unseen_meta(spec, seed)
    except (OSError, json.JSONDecodeError):
        return False


def _existing(lay: CorpusLayout, meta: dict) -> bool:
    """True if ``lay.root`` holds this complete corpus; False if it is new, empty or this corpus
    half-written; CorpusError if it holds something else."""
    root = lay.root
    if not root.is_dir():
        return False
    if lay.plan_json.is_file():
        try:
            old = json.loads(lay.plan_json.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != meta:
            what = f"size {old.get('size')!r}, seed {old.get('seed')!r}" if isinstance(old, dict) else "an unreadable plan"
            raise CorpusError(f"{root} holds another corpus ({what}; asked: size {meta['size']!r}, seed "
                              f"{meta['seed']}); choose another --out or delete {root}")
        if lay.corpus_json.is_file():
            lay.check()
            return True
        return False
    if any(p.name != ".lock" for p in root.iterdir()):
        raise CorpusError(f"{root} is not empty and is not a DUET corpus (no {lay.plan_json.name}); "
                          f"choose an empty or new --out")
    return False


@contextmanager
def _exclusive(root: Path):
    """One generator per corpus directory at a time (a second one waits, then finds it done)."""
    import fcntl
    import sys

    with open(root / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another generator working on {root} ...", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _generate(lay: CorpusLayout, spec: CorpusSpec, seed: int, workers: int, progress: bool,
              stop_after: int | None) -> Path:
    root = lay.root
    if lay.plan_json.is_file():  # resuming: drop temporary files of writes that were cut off
        for tmp in root.rglob(".*.tmp*"):
            tmp.unlink(missing_ok=True)
    atomic_write_json(lay.plan_json, _plan_meta(spec, seed))
    t0 = time.time()
    plan = make_plan(spec, seed)
    n_new = _synthesize(lay, plan, max(1, int(workers)), progress, stop_after)
    t_synth = time.time() - t0
    records = _load_records(lay, plan)
    parts = write_librispeech(lay, plan, records)
    parts.update(write_voxceleb(lay, plan))
    parts.update(write_iemocap(lay, plan, records))
    parts.update(write_abx(lay, plan, records))
    write_manifest(lay, plan, records)
    summary = _summary(plan, records, parts)
    wall = time.time() - t0
    atomic_write_json(lay.generation_json, {
        "wall_s": round(wall, 2), "synth_s": round(t_synth, 2), "workers": workers, "synthesized": n_new,
        "reused": len(plan.utts) - n_new, "audio_hours": summary["hours"], "machine": platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version()})
    atomic_write_json(lay.corpus_json, summary)  # last: marks the corpus complete
    return root
