"""Calibrating the mini SUPERB configs: controls that must learn, controls that must not, and a linear
probe on the same features that says how much the mini downstream leaves on the table.

Per task (``CONTROLS``):

* positive control -- a feature known to carry the task's information through s3prl's downstream:
  ``fbank_no_cmvn`` for the utterance tasks (its mean over frames keeps the long-term spectrum, where
  speaker and speaking style live), ``fbank`` for the phone/character tasks;
* negative control -- a feature that cannot carry it: ``fbank`` *with* per-utterance CMVN for the
  utterance tasks (its frame mean is zero for every utterance, and s3prl's utterance downstream is
  linear up to mean pooling, so the classifier sees a constant: chance by construction); for PR/ASR
  ``fbank`` trained on the label-shuffled view of the corpus (harness/corpus/shuffled.py: training
  transcripts permuted across utterances, dev/test true), which leaves only the label prior to learn.
  A seeded random-init DUET model is *not* a negative control there: its features are a fixed
  function of the log-mel and keep the phones (on ``small``: PER 54.7 %, chance 96.4 %); for ASV
  ``fbank_no_cmvn`` on the speaker-shuffled view (training utterances re-filed under other
  speakers). CMVN is no ASV control: the x-vector is non-linear before its pooling and CMVN'd fbank
  reaches EER 12.0 % on ``small`` (fbank_no_cmvn 16.5 %);
* probe -- for SID and ER, softmax regression (analysis.probes) trained on the task's train split and
  tested on its test split, twice: on the positive control's frame *means* (``probe_mean``: exactly
  what s3prl's utterance downstream can see, since it is linear up to the mean pooling; the mini
  config is judged against it) and on mean+std pooled frames (``probe``: what a linear read-out of
  the same features reaches with second-order statistics, out of that downstream's reach).

The CLI is harness/cli/calibrate.py; it runs the controls with `harness run` and writes
results/calibration.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Control:
    upstream: str
    ckpt: str | None = None          # --ckpt NAME=... item
    features: str | None = None      # --features for a DUET upstream
    why: str = ""
    shuffled: str = ""               # trained on a label-shuffled view of the corpus (harness/corpus/shuffled.py):
                                     # "transcripts" (LibriSpeech training) or "speakers" (VoxCeleb1 training)


CONTROLS: dict[str, tuple[Control, Control]] = {
    "sid": (Control("fbank_no_cmvn", why="frame mean keeps the speaker's long-term spectrum"),
            Control("fbank", why="per-utterance CMVN: every utterance's frame mean is 0, chance by construction")),
    "asv": (Control("fbank_no_cmvn", why="frame statistics keep the speaker's long-term spectrum"),
            Control("fbank_no_cmvn", shuffled="speakers",
                    why="training speakers shuffled across utterances: nothing about speakers to learn")),
    "er": (Control("fbank_no_cmvn", why="frame mean keeps level and spectral tilt of the speaking style"),
           Control("fbank", why="per-utterance CMVN: every utterance's frame mean is 0, chance by construction")),
    "pr": (Control("fbank", why="log-mel frames carry the phones"),
           Control("fbank", shuffled="transcripts",
                   why="training transcripts shuffled across utterances: only the label prior to learn")),
    "asr": (Control("fbank", why="log-mel frames carry the characters"),
            Control("fbank", shuffled="transcripts",
                    why="training transcripts shuffled across utterances: only the label prior to learn")),
}


# ----------------------------------------------------------------------------- the task's splits

def sid_split(layout) -> dict[str, tuple[list[Path], list[str]]]:
    """{'train'|'dev'|'test': (wav paths, speaker labels)} from iden_split.txt (1/2/3)."""
    names = {"1": "train", "2": "dev", "3": "test"}
    out: dict[str, tuple[list[Path], list[str]]] = {n: ([], []) for n in names.values()}
    root = Path(layout.voxceleb1)
    for ln in Path(layout.iden_split).read_text().splitlines():
        parts = ln.split()
        if len(parts) != 2 or parts[0] not in names:
            continue
        wav = next((p for p in (root / "dev" / "wav" / parts[1], root / "test" / "wav" / parts[1]) if p.is_file()),
                   root / "dev" / "wav" / parts[1])
        out[names[parts[0]]][0].append(wav)
        out[names[parts[0]]][1].append(parts[1].split("/")[0])
    return out


def er_split(layout, fold: int = 1) -> dict[str, tuple[list[Path], list[str]]]:
    """{'train'|'test': (wav paths, emotion labels)} of one fold (test = session ``fold``)."""
    out = {}
    for part in ("train", "test"):
        meta = json.loads((Path(layout.iemocap_meta) / f"Session{fold}" / f"{part}_meta_data.json").read_text())
        out[part] = ([Path(layout.iemocap) / m["path"] for m in meta["meta_data"]],
                     [m["label"] for m in meta["meta_data"]])
    return out


# ----------------------------------------------------------------------------- features

def pooled_features(upstream: str, wavs: list[Path], ckpt: str | None = None) -> np.ndarray:
    """(N, 2 D): mean and standard deviation over frames of the upstream's last hidden state
    (s3prl's baseline front-ends have one), one row per file, built as run_downstream.py -u would."""
    import soundfile as sf
    import torch

    from harness.features.store import load_upstream

    model = load_upstream(upstream, ckpt).eval()
    rows = []
    with torch.no_grad():
        for w in wavs:
            audio, _ = sf.read(str(w), dtype="float32")
            hs = model([torch.from_numpy(audio)])["hidden_states"][-1][0]      # (T, D)
            rows.append(torch.cat([hs.mean(0), hs.std(0)]).numpy())
    return np.stack(rows).astype(np.float64)


def probe_accuracy_pct(x_tr: np.ndarray, y_tr: list[str], x_te: np.ndarray, y_te: list[str]) -> dict:
    """Softmax-regression accuracy (percent) trained on one split, tested on another (the labels of
    the test split unseen in training count as errors)."""
    import torch

    from analysis.probes import train_linear_probe

    classes = sorted(set(y_tr))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in y_tr])
    lin, mean, std = train_linear_probe(x_tr, y, len(classes), device="cpu")
    with torch.no_grad():
        pred = lin(torch.as_tensor((x_te - mean) / std, dtype=torch.float32)).argmax(1).numpy()
    truth = np.array([index.get(c, -1) for c in y_te])
    return {"probe": 100.0 * float((pred == truth).mean()), "probe_n_train": len(y_tr), "probe_n_test": len(y_te)}


def probe_for(task: str, layout, upstream: str) -> dict | None:
    """The linear-probe references of a task's positive control (SID, ER fold 1), else None:
    ``probe`` on mean+std pooled frames, ``probe_mean`` on the frame means alone (the first half of
    :func:`pooled_features`' columns: what s3prl's utterance downstream sees after its pooling)."""
    if task == "sid":
        s = sid_split(layout)
        tr_x, tr_y = pooled_features(upstream, s["train"][0] + s["dev"][0]), s["train"][1] + s["dev"][1]
        te_x, te_y = pooled_features(upstream, s["test"][0]), s["test"][1]
    elif task == "er":
        s = er_split(layout, 1)
        tr_x, tr_y = pooled_features(upstream, s["train"][0]), s["train"][1]
        te_x, te_y = pooled_features(upstream, s["test"][0]), s["test"][1]
    else:
        return None
    d = tr_x.shape[1] // 2
    out = probe_accuracy_pct(tr_x, tr_y, te_x, te_y)
    out["probe_mean"] = probe_accuracy_pct(tr_x[:, :d], tr_y, te_x[:, :d], te_y)["probe"]
    return out
