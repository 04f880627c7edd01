"""`harness pretrain` from the researcher's own model: a transformers HuBERT or WavLM directory
(12 layers, small width, random init) as Learn2Diss's frozen backbone and as JOOCI's
initialisation, a fairseq .pt behind allow_unpickle, the `model.*` shape overrides checked against
the backbone, and k-means sizes larger than the data refused before training."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

TINY = ["--no-progress", "preset=tiny", "data.batch_size=2", "data.crop_s=1.0"]
LAYERS = 12


def make_source_dir(root: Path, kind: str, seed: int = 7):
    """A seeded random transformers HuBERT/WavLM (HuBERT Base layout: group-norm CNN with the
    standard 320-sample stride, post-LN; 12 layers, 32 wide) saved with save_pretrained."""
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    shape = dict(hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                 feat_extract_norm="group", do_stable_layer_norm=False)
    torch.manual_seed(seed)
    if kind == "hubert":
        hf = HubertModel(HubertConfig(**shape))
    else:
        hf = WavLMModel(WavLMConfig(**shape, num_buckets=16, max_bucket_distance=40))
    d = root / f"hf-{kind}-{seed}"
    hf.eval().save_pretrained(d)
    return hf, d


@pytest.fixture(scope="module", params=["hubert", "wavlm"])
def source(request, tmp_path_factory):
    return make_source_dir(tmp_path_factory.mktemp("sources"), request.param)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    return make_source_dir(tmp_path_factory.mktemp("hubert"), "hubert")[1]


def cli(*args) -> None:
    from harness.cli import main

    rc = main([str(a) for a in args])
    assert rc == 0, f"harness {' '.join(map(str, args))} exited {rc}"


def _main(args, capsys):
    from harness.cli import main

    rc = main(["pretrain", *map(str, args)])
    return rc, capsys.readouterr().err


def _rows(run: Path, phase: str) -> list[dict]:
    with open(run / phase / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _wave() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return 0.1 * torch.randn(1, 12_000, generator=g)


def _trained(model_name: str, cfg: dict, phase_dir: Path):
    """The model as the trainer last saved it in a phase (its objective's ``model.*`` weights)."""
    from pretrain.state import latest_state, load_state
    from upstream.registry import build_model

    state = load_state(latest_state(phase_dir))["model_state"]
    model = build_model(model_name, cfg)
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return model.eval()


# ----------------------------------------------------------------------------- end to end
def test_learn2diss_from_a_transformers_dir(source, tiny_corpus, tmp_path):
    from upstream.pretrained import from_pretrained

    hf, d = source
    kind = hf.config.model_type
    out = tmp_path / "l2d"
    cli("pretrain", "--recipe", "learn2diss-compact", "--corpus", tiny_corpus, "--out", out, "--steps", "2",
        *TINY, f"backbone_ckpt={d}", "k_frame=8", "q_utt=4")
    meta = json.loads((out / "final" / "config.json").read_text())
    cfg = meta["config"]
    # the shape comes from the backbone; g = the preset's 1 top layer, h reads the middle layer
    assert cfg["backbone"]["num_layers"] == LAYERS and cfg["backbone"]["hidden_size"] == 32
    assert cfg["frame_layers"] == 1 and cfg["utt_input_layer"] == LAYERS // 2
    assert f"transformers {kind} directory {d}" in meta["provenance"]["backbone"]
    assert [int(r["step"]) for r in _rows(out, "stage2")] == [1, 2]

    model = from_pretrained(out / "final", expected_model="learn2diss").eval()
    wav = _wave()
    with torch.no_grad():
        ours = model(wav, torch.tensor([wav.shape[1]]))
        ref = hf(wav, output_hidden_states=True).hidden_states
    frozen = LAYERS - cfg["frame_layers"]
    assert len(ours.content) == len(ref) == LAYERS + 1
    for i in range(frozen + 1):                                  # B_0 .. B_{L-M}: transformers' own outputs
        torch.testing.assert_close(ours.content[i], ref[i], atol=1e-5, rtol=0, msg=f"frozen layer {i}")
    assert not torch.allclose(ours.content[-1], ref[-1], atol=1e-3)   # g trained away from the source's top layer

    # config.json rebuilds exactly the model that was trained (the last training state)
    with torch.no_grad():
        again = _trained("learn2diss", cfg, out / "stage2")(wav, torch.tensor([wav.shape[1]]))
    for a, b in zip(again.content + again.other, ours.content + ours.other):
        assert torch.equal(a, b)
    assert torch.equal(again.utterance, ours.utterance)


def test_jooci_from_a_transformers_dir(source, tiny_corpus, tmp_path):
    from upstream.pretrained import from_pretrained

    hf, d = source
    out = tmp_path / "jooci"
    cli("pretrain", "--recipe", "jooci-compact", "--corpus", tiny_corpus, "--out", out, "--steps", "2", *TINY,
        f"init_ckpt={d}", "label_layers=3,9", "predict_layers=3,9", "k=8")
    meta = json.loads((out / "final" / "config.json").read_text())
    assert meta["config"]["encoder"]["num_layers"] == LAYERS and meta["config"]["encoder"]["hidden_size"] == 32
    assert f"transformers {hf.config.model_type} directory" in meta["provenance"]["init"]
    assert {"content", "other_distill", "reg_decoder"} <= set(_rows(out, "stage2")[0])
    assert all(float(r["loss"]) == float(r["loss"]) for r in _rows(out, "stage2"))
    model = from_pretrained(out / "final", expected_model="jooci").eval()
    wav, n = _wave(), torch.tensor([_wave().shape[1]])
    with torch.no_grad():
        ours = model(wav, n)
        ref = hf(wav, output_hidden_states=True).hidden_states
        after1 = _trained("jooci", meta["config"], out / "stage1")(wav, n)
        after2 = _trained("jooci", meta["config"], out / "stage2")(wav, n)
    # stage 1 keeps the shared CNN + content encoder frozen: still exactly the source's layers
    assert len(after1.content) == len(ref) == LAYERS + 1
    for i, (a, b) in enumerate(zip(after1.content, ref)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"content layer {i} after stage 1")
    # config.json rebuilds exactly the model stage 2 ended with
    for a, b in zip(after2.content + after2.other, ours.content + ours.other):
        assert torch.equal(a, b)
    assert torch.equal(after2.utterance, ours.utterance)


def test_barlow_twins_from_a_transformers_dir(hubert_dir, tiny_corpus, tmp_path):
    """init_ckpt: the encoder starts as the source model (at lr 1e-12 it still is that model), card and
    provenance say so; without it the encoder is random (the bundled recipe's default)."""
    from transformers import HubertModel

    from upstream.pretrained import from_pretrained

    out = tmp_path / "bt"
    cli("pretrain", "--recipe", "barlow-twins-compact", "--corpus", tiny_corpus, "--out", out, "--steps", "1", *TINY,
        f"init_ckpt={hubert_dir}", "train.lr=1e-12")
    meta = json.loads((out / "final" / "config.json").read_text())
    assert meta["config"]["encoder"]["num_layers"] == LAYERS and meta["config"]["encoder"]["hidden_size"] == 32
    assert "Initialised from `transformers hubert directory" in (out / "final" / "MODEL_CARD.md").read_text()
    model = from_pretrained(out / "final", expected_model="barlow_twins").eval()
    hf = HubertModel.from_pretrained(hubert_dir).eval()
    wav = _wave()
    with torch.no_grad():
        ours = model(wav, torch.tensor([wav.shape[1]])).content
        ref = hf(wav, output_hidden_states=True).hidden_states
    assert len(ours) == len(ref) == LAYERS + 1
    for i, (a, b) in enumerate(zip(ours, ref)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"content layer {i}")


def test_barlow_twins_layer_split_keeps_its_frozen_bottom(hubert_dir, tiny_corpus, tmp_path):
    """content_layers=4 freeze_layers=2: the checkpoint serves content = H_0..H_4 and other = H_5..H_12
    pooled; after training at a real learning rate, hidden states 0 and 1 are still the source model's
    (post-LN: its input LayerNorm belongs to state 0), state 2 moved."""
    from transformers import HubertModel

    from upstream.pretrained import from_pretrained

    out = tmp_path / "bt-split"
    cli("pretrain", "--recipe", "barlow-twins-compact", "--corpus", tiny_corpus, "--out", out, "--steps", "2", *TINY,
        f"init_ckpt={hubert_dir}", "content_layers=4", "freeze_layers=2", "frame_layer=4", "train.lr=1e-2",
        "train.warmup_steps=1")
    card = (out / "final" / "MODEL_CARD.md").read_text()
    assert "content = H_0..H_4, other = H_5..H_12" in card and "Hidden states 0..1 kept as initialised" in card
    model = from_pretrained(out / "final", expected_model="barlow_twins").eval()
    hf = HubertModel.from_pretrained(hubert_dir).eval()
    wav = _wave()
    with torch.no_grad():
        ours = model(wav, torch.tensor([wav.shape[1]]))
        ref = hf(wav, output_hidden_states=True).hidden_states
    assert len(ours.content) == 5 and len(ours.other) == LAYERS - 4
    assert ours.other[0].shape[1] == -(-ours.content[0].shape[1] // model.other_downsample)
    for i in (0, 1):
        torch.testing.assert_close(ours.content[i], ref[i], atol=1e-5, rtol=0, msg=f"content layer {i}")
    assert (ours.content[2] - ref[2]).abs().max() > 1e-3


# ----------------------------------------------------------------------------- shape overrides
@pytest.mark.parametrize("recipe,opt,args,says", [
    ("learn2diss-compact", "backbone_ckpt", ["model.utt_input_layer=12"],
     ["model.utt_input_layer=12 is outside 0..11", "12 transformer layers", "use model.utt_input_layer=<0..11>"]),
    ("learn2diss-compact", "backbone_ckpt", ["model.frame_layers=13"],
     ["model.frame_layers=13 is outside 1..12", "12 transformer layers"]),
    ("learn2diss-compact", "backbone_ckpt", ["model.frame_layers=4", "model.utt_input_layer=9"],
     ["model.utt_input_layer=9 is outside 0..8", "model.frame_layers=4"]),
    ("jooci-compact", "init_ckpt", ["model.other_blocks=13"], ["model.other_blocks=13 is outside 1..12"]),
    ("jooci-compact", "init_ckpt", ["predict_layers=2,13", "label_layers=2,3"], ["predict_layers=13 is outside 0..12"]),
    ("jooci-compact", "init_ckpt", ["model.other_dim=30"], ["model.other_dim=30", "res2net_scale=4"]),
])
def test_shape_overrides_checked_against_the_backbone(recipe, opt, args, says, hubert_dir, tiny_corpus, tmp_path,
                                                      capsys):
    out = tmp_path / "run"
    rc, err = _main(["--recipe", recipe, "--corpus", tiny_corpus, "--out", out, f"{opt}={hubert_dir}", *args], capsys)
    assert rc == 2, err
    for s in says:
        assert s in err, (s, err)
    assert not out.exists()                                     # refused before any work


def test_shape_overrides_are_dotted_keys(hubert_dir, capsys):
    from harness.cli import main

    assert main(["pretrain", "--recipe", "learn2diss-compact", "--show-config", "model.frame_layers=3",
                 "model.utt_input_layer=0"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == {"frame_layers": 3, "utt_input_layer": 0}
    assert main(["pretrain", "--recipe", "jooci-compact", "--show-config", "model.other_blocks=none"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["other_blocks"] is None
    rc, err = _main(["--recipe", "learn2diss-compact", f"backbone_ckpt={hubert_dir}", "model.frame_layers=two"],
                    capsys)
    assert rc == 2 and "model.frame_layers" in err
    rc, err = _main(["--recipe", "learn2diss-compact", "model.frame_layerz=2"], capsys)
    assert rc == 2 and "unknown override key 'model.frame_layerz'" in err and "model.frame_layers" in err


def test_accepted_sources_and_their_errors(hubert_dir, tmp_path, capsys):
    """What `-k` takes is what backbone_ckpt/init_ckpt take; a pickled fairseq .pt needs the opt-in."""
    from pretrain.recipes import RECIPES
    from pretrain.recipes.common import apply_overrides
    from tests.test_importers import Opaque, make_fairseq_model

    m, model_cfg, task_cfg = make_fairseq_model()
    pt = tmp_path / "hubert.pt"
    torch.save({"cfg": {"model": model_cfg, "task": task_cfg}, "model": m.state_dict(), "extra": Opaque()}, pt)
    rc, err = _main(["--recipe", "learn2diss-compact", f"backbone_ckpt={pt}"], capsys)
    assert rc == 2 and "backbone_ckpt=" in err and "allow_unpickle" in err and "execute arbitrary code" in err
    r = RECIPES["learn2diss-compact"]
    with pytest.warns(UserWarning, match="only do this for files you trust"):
        r.check(apply_overrides(r.config_cls(), [f"backbone_ckpt={pt}", "allow_unpickle=true"]))
    r.check(apply_overrides(r.config_cls(), [f"backbone_ckpt={hubert_dir}"]))
    RECIPES["jooci-compact"].check(apply_overrides(RECIPES["jooci-compact"].config_cls(), [f"init_ckpt={hubert_dir}"]))
    (tmp_path / "not-a-model").mkdir()
    rc, err = _main(["--recipe", "jooci-compact", f"init_ckpt={tmp_path / 'not-a-model'}"], capsys)
    assert rc == 2 and "init_ckpt=" in err and "transformers HuBERT/WavLM directory" in err


# ----------------------------------------------------------------------------- k-means sizes
def _n_utts(corpus) -> int:
    from pretrain.data import find_training_audio

    return len(find_training_audio(corpus, "train-clean-100"))


@pytest.mark.parametrize("recipe,args,says", [
    ("learn2diss-compact", ["k_frame=8", "q_utt=1000"],
     ["q_utt=1000 clusters", "only {n} utterances", "set q_utt=<at most {n}>"]),
    ("learn2diss-compact", ["k_frame=100000", "q_utt=4"], ["k_frame=100000 clusters", "frames ({n} utterances"]),
    ("jooci-compact", ["k=100000", "label_layers=2", "predict_layers=2"], ["k=100000 clusters", "frames"]),
    ("hubert-compact", ["k_mfcc=8", "k_layer=100000"], ["k_layer=100000 clusters", "frames"]),
])
def test_kmeans_larger_than_the_data_is_refused_before_training(recipe, args, says, hubert_dir, tiny_corpus,
                                                               tmp_path, capsys):
    src = {"learn2diss-compact": [f"backbone_ckpt={hubert_dir}"], "jooci-compact": [f"init_ckpt={hubert_dir}"]}
    out = tmp_path / "run"
    rc, err = _main(["--recipe", recipe, "--corpus", tiny_corpus, "--out", out, "--steps", "1", *TINY,
                     *src.get(recipe, []), *args], capsys)
    n = _n_utts(tiny_corpus)
    assert rc == 2, err
    for s in says:
        assert s.format(n=n) in err, (s, err)
    assert not any(p.name.startswith(("stage", "iter")) for p in out.iterdir())     # no phase started
    assert not list((out / "cache").glob("km_*"))                                  # no k-means ran


def test_kmeans_frames_smaller_than_k_is_refused_up_front(hubert_dir, capsys, tmp_path):
    rc, err = _main(["--recipe", "learn2diss-compact", "--out", tmp_path / "o", f"backbone_ckpt={hubert_dir}",
                     "q_utt=50", "kmeans_frames=20"], capsys)
    assert rc == 2 and "kmeans_frames=20" in err and "k_frame=100" in err
    assert not (tmp_path / "o").exists()


def test_a_run_directory_stays_with_its_backbone(hubert_dir, tiny_corpus, tmp_path, capsys):
    other = make_source_dir(tmp_path, "hubert", seed=8)[1]
    out = tmp_path / "run"
    args = ["--recipe", "learn2diss-compact", "--corpus", tiny_corpus, "--out", out, *TINY, "q_utt=1000"]
    rc, err = _main([*args, f"backbone_ckpt={hubert_dir}"], capsys)
    assert rc == 2 and "q_utt=1000" in err                     # stopped before k-means, after pinning the source
    rc, err = _main([*args, f"backbone_ckpt={other}"], capsys)
    assert rc == 2 and f"was started from transformers hubert directory {hubert_dir}" in err, err
    assert "use a new --out" in err
    rc, err = _main([*args, f"backbone_ckpt={hubert_dir}"], capsys)
    assert rc == 2 and "q_utt=1000" in err                     # the same backbone again is fine
