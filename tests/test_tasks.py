"""harness.superb.tasks: the SUPERB task registry (configs, corpus overrides, metric parsers)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import yaml

from harness.superb import tasks
from harness.superb.tasks import TASKS, MetricNotFoundError, UnknownTaskError, get_tasks


class FakeLayout:
    """The CorpusLayout attributes tasks.py reads, rooted at ``root`` (check() is a no-op)."""

    def __init__(self, root: Path):
        r = Path(root)
        self.root = r
        self.librispeech = r / "LibriSpeech"
        self.bucket_dir = self.librispeech / "len_for_bucket"
        self.char_dict = self.librispeech / "char.dict"
        self.lexicon = self.librispeech / "lexicon.txt"
        self.phone_vocab = self.librispeech / "phones.txt"
        self.voxceleb1 = r / "VoxCeleb1"
        self.iden_split = self.voxceleb1 / "iden_split.txt"
        self.veri_test = self.voxceleb1 / "veri_test.txt"
        self.veri_dev = self.voxceleb1 / "dev_meta_data" / "dev_meta_data.txt"
        self.iemocap = r / "IEMOCAP"
        self.iemocap_meta = self.iemocap / "meta_data"
        self.checked = 0

    def bucket_csv(self, split):
        return self.bucket_dir / {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}[split]

    def check(self):
        self.checked += 1


def test_registry_covers_the_superb_tasks():
    assert list(TASKS) == ["sid", "asv", "er", "pr", "asr"]
    assert {t.downstream for t in TASKS.values()} == {"voxceleb1", "sv_voxceleb1", "emotion", "ctc", "asr"}
    assert [t.name for t in TASKS.values() if t.higher_is_better] == ["sid", "er"]
    assert TASKS["er"].folds == ("fold1", "fold2", "fold3", "fold4", "fold5")


@pytest.mark.parametrize("kind", ["real", "mini"])
@pytest.mark.parametrize("name", list(TASKS))
def test_configs_exist_and_overrides_hit_existing_keys(name, kind, tmp_path):
    """Every key the corpus overrides set is a key the config really has (no silent typos)."""
    task = TASKS[name]
    cfg = yaml.safe_load(task.config(kind).read_text())
    assert {"runner", "optimizer", "downstream_expert"} <= set(cfg)
    for dotted in task.corpus_paths(FakeLayout(tmp_path)):
        node = cfg["downstream_expert"]
        for part in dotted.split("."):
            assert part in node, f"{task.config(kind)}: downstream_expert.{dotted} missing"
            node = node[part]
    if kind == "mini":  # CPU-sized
        assert cfg["runner"]["total_steps"] <= 2000


def test_overrides_round_trip_through_s3prl(tmp_path):
    from s3prl.utility.helper import override

    layout = FakeLayout(tmp_path / "my corpus")  # a space in the path must survive
    for task in TASKS.values():
        cfg = yaml.safe_load(task.config("mini").read_text())
        o = task.overrides(layout, extra=tasks.runner_overrides(total_steps=7))
        override(o, argparse.Namespace(), cfg)
        assert cfg["runner"]["total_steps"] == 7
        for dotted, want in task.corpus_paths(layout).items():
            node = cfg["downstream_expert"]
            for part in dotted.split("."):
                node = node[part]
            assert node == ([str(w) for w in want] if isinstance(want, list) else str(want))
    assert layout.checked == len(TASKS)
    cfg = yaml.safe_load(TASKS["er"].config("mini").read_text())
    override(TASKS["er"].overrides(layout, fold="fold3"), argparse.Namespace(), cfg)
    assert cfg["downstream_expert"]["datarc"]["test_fold"] == "fold3"
    with pytest.raises(ValueError, match="fold6"):
        TASKS["er"].overrides(layout, fold="fold6")
    with pytest.raises(ValueError, match="no folds"):
        TASKS["sid"].overrides(layout, fold="fold1")
    with pytest.raises(ValueError, match="'='"):
        TASKS["sid"].overrides(FakeLayout(tmp_path / "a=b"))


S3PRL_OUTPUT = {
    # what each downstream prints (training prints dev lines first; tqdm clutters stderr)
    "sid": ("dev acc: 0.5\n\x1b[Atest:  50%|#####     | 1/2\rtest acc: 0.8125\n", 0.8125),
    "asv": ("sv-voxceleb1/train-loss: 3.2\nsv-voxceleb1/test-EER: 0.12345678\n", 0.12345678),
    "er": ("[Expert] - using the testing fold\ndev acc: 0.3\ntest acc: 0.4375\n", 0.4375),
    "pr": ("dev loss: 3.0\ndev per: 0.9\ntest loss: 2.5\ntest per: 0.6543\n", 0.6543),
    "asr": ("dev-clean loss: 2.0\ndev-clean wer: 99.5\ntest-clean loss: 1.9\ntest-clean uer: 40.1\n"
            "test-clean wer: 98.25\n", 98.25),
}


@pytest.mark.parametrize("name", list(TASKS))
def test_parse_metric(name):
    text, want = S3PRL_OUTPUT[name]
    task = TASKS[name]
    assert task.parse_metric(text) == pytest.approx(want)
    with pytest.raises(MetricNotFoundError, match=name):
        task.parse_metric("Traceback (most recent call last):\nRuntimeError: boom\n")


def test_parse_metric_dev_split_and_nan():
    assert TASKS["sid"].parse_metric("dev acc: 0.5\ntest acc: 0.8\n", split="dev") == 0.5
    assert math.isnan(TASKS["pr"].parse_metric("test per: nan\n"))
    # 'test acc' must not be read out of 'xtest acc' or 'dev-test acc'
    with pytest.raises(MetricNotFoundError):
        TASKS["sid"].parse_metric("dev-test acc: 0.3\n")
    assert TASKS["asv"].better(0.1, 0.2) and TASKS["sid"].better(0.9, 0.2)
    assert not TASKS["sid"].better(float("nan"), 0.2)


def test_unknown_task_names_the_known_ones():
    assert [t.name for t in get_tasks("sid, asr,er,sid")] == ["sid", "asr", "er"]
    with pytest.raises(UnknownTaskError, match="did you mean 'asr'.*known tasks: sid, asv, er, pr, asr"):
        get_tasks("sid,asrr")
    with pytest.raises(UnknownTaskError, match="no task"):
        get_tasks(" , ")


def test_eval_checkpoint_prefers_dev_best(tmp_path):
    with pytest.raises(FileNotFoundError, match="did training finish"):
        TASKS["sid"].eval_checkpoint(tmp_path)
    for n in (200, 1000, 400):
        (tmp_path / f"states-{n}.ckpt").write_bytes(b"")
    assert TASKS["sid"].eval_checkpoint(tmp_path).name == "states-1000.ckpt"  # no dev-best written
    (tmp_path / "dev-best.ckpt").write_bytes(b"")
    assert TASKS["sid"].eval_checkpoint(tmp_path).name == "dev-best.ckpt"
    assert TASKS["asv"].eval_checkpoint(tmp_path).name == "states-1000.ckpt"  # SUPERB: no dev selection
    argv = TASKS["asr"].eval_argv(tmp_path)
    assert argv[:3] == ["-m", "evaluate", "-t"] and argv[3] == "test-clean"


def test_train_argv_is_run_downstream_syntax(tmp_path):
    argv = TASKS["er"].train_argv("fbank", tmp_path / "x", FakeLayout(tmp_path), fold="fold2",
                                  upstream_args=["-s", "content"])
    assert argv[:6] == ["-m", "train", "-u", "fbank", "-d", "emotion"]
    assert argv[argv.index("-c") + 1].endswith("downstream_configs/mini/er.yaml")
    assert "test_fold='fold2'" in argv[argv.index("-o") + 1] and argv[argv.index("-s") + 1] == "content"
    with pytest.raises(ValueError, match="real, mini|'real', 'mini'"):
        TASKS["sid"].config("huge")


def test_missing_or_half_written_corpus_is_a_clear_error(tmp_path):
    from harness.corpus.layout import CorpusError

    with pytest.raises(CorpusError, match="does not exist: run `harness corpus make"):
        TASKS["sid"].overrides(tmp_path / "nothing")
    (tmp_path / "half" / "VoxCeleb1").mkdir(parents=True)
    with pytest.raises(CorpusError, match="half-written.*corpus.json is missing"):
        TASKS["pr"].overrides(tmp_path / "half")
