"""Real datasets for `harness run --data-config FILE.yaml` (with downstream_configs/real/<task>.yaml).

The YAML names the corpus roots; every other path defaults to where the real distribution (plus
s3prl's usual preparation) puts it and can be given explicitly::

    voxceleb1: /data/VoxCeleb1            # sid, asv: dev/wav, test/wav, iden_split.txt, veri_test.txt
    librispeech: /data/LibriSpeech        # pr, asr: train-clean-100, dev-clean, test-clean
    iemocap: /data/IEMOCAP_full_release   # er: Session1..5 (+ meta_data/ from s3prl's pre_process)
    # optional explicit files (defaults shown relative to the roots above):
    # iden_split: /data/VoxCeleb1/iden_split.txt
    # veri_test: /data/VoxCeleb1/veri_test.txt
    # veri_dev: /data/VoxCeleb1/dev_meta_data/dev_meta_data.txt
    # bucket_dir: /data/LibriSpeech/len_for_bucket      (s3prl preprocess/generate_len_for_bucket.py)
    # char_dict: /data/LibriSpeech/char.dict
    # lexicon: /data/LibriSpeech/lexicon.txt            (libriphone g2p lexicon)
    # phone_vocab: /data/LibriSpeech/phones.txt
    # iemocap_meta: /data/IEMOCAP_full_release/meta_data

The result behaves like a generated corpus's `CorpusLayout` (same attribute names), so each task's
`overrides(layout)` points the real config at these paths; a missing path is an error naming the
YAML key before any training starts. An example lives in downstream_configs/real/datasets.example.yaml.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.corpus.prepare import read_yaml_mapping

ROOT_KEYS = {"voxceleb1": ("sid", "asv"), "librispeech": ("pr", "asr"), "iemocap": ("er",)}
# explicit file/dir keys: (layout attribute, root key, default relative path, tasks that need it)
FILE_KEYS = {
    "iden_split": ("iden_split", "voxceleb1", "iden_split.txt", ("sid",)),
    "veri_test": ("veri_test", "voxceleb1", "veri_test.txt", ("asv",)),
    "veri_dev": ("veri_dev", "voxceleb1", "dev_meta_data/dev_meta_data.txt", ()),
    "bucket_dir": ("bucket_dir", "librispeech", "len_for_bucket", ("asr",)),
    "char_dict": ("char_dict", "librispeech", "char.dict", ("asr",)),
    "lexicon": ("lexicon", "librispeech", "lexicon.txt", ("pr",)),
    "phone_vocab": ("phone_vocab", "librispeech", "phones.txt", ("pr",)),
    "iemocap_meta": ("iemocap_meta", "iemocap", "meta_data", ("er",)),
}
TASK_ROOT = {t: k for k, ts in ROOT_KEYS.items() for t in ts}


@dataclass
class RealData:
    path: Path
    entries: dict

    @classmethod
    def load(cls, path: Path) -> "RealData":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--data-config {path}: no such file; copy "
                                    f"downstream_configs/real/datasets.example.yaml and set your corpus roots")
        entries = read_yaml_mapping(path, ValueError, "expected a mapping like 'voxceleb1: /data/VoxCeleb1'")
        unknown = sorted(set(entries) - set(ROOT_KEYS) - set(FILE_KEYS))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; valid: {sorted(ROOT_KEYS) + sorted(FILE_KEYS)}")
        base = path.parent
        entries = {k: (Path(v).expanduser() if Path(v).expanduser().is_absolute() else (base / v)).resolve()
                   for k, v in entries.items()}
        return cls(path, entries)

    def path_of(self, key: str) -> Path | None:
        if key in self.entries:
            return self.entries[key]
        if key in FILE_KEYS:
            _, root, rel, _ = FILE_KEYS[key]
            return self.entries[root] / rel if root in self.entries else None
        return None

    def check(self, tasks: list[str]) -> None:
        for t in tasks:
            root = TASK_ROOT.get(t)
            if root is None:
                continue
            if root not in self.entries:
                raise ValueError(f"{self.path}: task {t} needs '{root}: /path/to/its/root' (none given)")
            if not self.entries[root].is_dir():
                raise FileNotFoundError(f"{self.path}: {root}: {self.entries[root]} is not a directory (task {t})")
            for key, (_, rk, _, needers) in FILE_KEYS.items():
                if t in needers:
                    p = self.path_of(key)
                    if p is None or not p.exists():
                        raise FileNotFoundError(f"{self.path}: task {t} needs {key} at {p}; prepare it (see "
                                                f"README 'Real datasets') or set '{key}: PATH' in the YAML")

    def data_id(self) -> str:
        return hashlib.sha1(json.dumps({k: str(v) for k, v in sorted(self.entries.items())}).encode()).hexdigest()[:10]

    def layout(self):
        """A CorpusLayout whose attributes point at the real datasets."""
        from harness.corpus.layout import CorpusLayout

        lay = CorpusLayout(self.path.parent)
        for key in ROOT_KEYS:
            if key in self.entries:
                setattr(lay, key, self.entries[key])
        if "voxceleb1" in self.entries:
            lay.vox_dev_wav = self.entries["voxceleb1"] / "dev" / "wav"
            lay.vox_test_wav = self.entries["voxceleb1"] / "test" / "wav"
        for key, (attr, _, _, _) in FILE_KEYS.items():
            p = self.path_of(key)
            if p is not None:
                setattr(lay, attr, p)
        return lay

    def root_for(self, task: str) -> Path:
        return self.entries[TASK_ROOT[task]]
