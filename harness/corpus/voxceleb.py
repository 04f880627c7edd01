"""VoxCeleb1 layout for s3prl `voxceleb1` (SID) and `sv_voxceleb1` (ASV).

Wav files are written by the worker (``{dev,test}/wav/idNNNNN/<video>/<nnnnn>.wav``). This writes
``iden_split.txt`` (``1|2|3 path``, all speakers) and the ASV trial lists (``label path1 path2``,
label 1 = same speaker): ``veri_test.txt`` over the test speakers (``test/wav``, unseen in ASV
training) and ``dev_meta_data/dev_meta_data.txt`` over dev speakers. Half of each speaker's trials
are target trials. ``make_trials`` and ``write_trials`` are shared with ``harness.corpus.prepare``.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .fileio import atomic_write_text
from .layout import CorpusLayout
from .plan import Plan


def make_trials(files_by_spk: dict[str, list[str]], per_speaker: int, rng: np.random.Generator) -> list[str]:
    spks = sorted(files_by_spk)
    lines = []
    for s in spks:
        files = files_by_spk[s]
        others = [o for o in spks if o != s]
        for t in range(per_speaker):
            a = files[rng.integers(len(files))]
            if t % 2 == 0 and len(files) > 1:
                b = files[rng.integers(len(files))]
                while b == a:
                    b = files[rng.integers(len(files))]
                lines.append(f"1 {a} {b}\n")
            else:
                o = others[rng.integers(len(others))]
                lines.append(f"0 {a} {files_by_spk[o][rng.integers(len(files_by_spk[o]))]}\n")
    return lines


def write_trials(path, lines: list[str]) -> None:
    """An ASV trial list (``make_trials``' lines, kept in their order)."""
    atomic_write_text(path, "".join(lines))


def write_voxceleb(lay: CorpusLayout, plan: Plan) -> dict:
    iden = sorted(f"{u.sid_split} {u.vox_rel}\n" for u in plan.utts)
    atomic_write_text(lay.iden_split, "".join(iden))
    by_set: dict[str, dict] = {"dev": defaultdict(list), "test": defaultdict(list)}
    for u in plan.utts:
        by_set[u.vox_set][u.vox_id].append(u.vox_rel)
    rng = np.random.default_rng([plan.seed, 0xA5F])
    n = plan.spec.asv_trials_per_speaker
    test = make_trials(by_set["test"], n, rng)
    dev_spks = sorted(by_set["dev"])[-max(2, plan.spec.n_asv_test):]
    dev = make_trials({s: by_set["dev"][s] for s in dev_spks}, n, rng)
    write_trials(lay.veri_test, test)
    write_trials(lay.veri_dev, dev)
    sid = {k: sum(1 for u in plan.utts if u.sid_split == k) for k in (1, 2, 3)}
    return {"sid_train": sid[1], "sid_dev": sid[2], "sid_test": sid[3], "asv_test_trials": len(test),
            "asv_dev_trials": len(dev), "asv_train_speakers": len(by_set["dev"]),
            "asv_test_speakers": len(by_set["test"])}
