"""Method fidelity of the recipes' objectives (tiny models, CPU, seconds): the fixes of
findings.md "Method fidelity" each have a test here that failed on the code before the fix."""
import dataclasses

import pytest
import torch

from upstream.registry import build_model, preset_config


def speechlike(B, S, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(S) / 16000
    f0 = 100 + 150 * torch.rand(B, 1, generator=g)
    return 0.1 * torch.sin(2 * torch.pi * f0 * t) + 0.02 * torch.randn(B, S, generator=g), g


# ------------------------------------------------------------------------------ Learn2Diss
def test_learn2diss_club_term_moves_the_utterance_encoder():
    """With a fitted estimator, the default λ·CLUB changes h's gradient by ~1.2 % here, >= 0.8 %
    (the paper's λ = 1e-3: ~0.13 %, inert; λ = 0.1 was too strong in a compact trial, see the recipe)."""
    from pretrain.recipes.learn2diss_compact import Learn2DissObjective, Learn2DissRecipeConfig
    torch.manual_seed(0)
    m = build_model("learn2diss", "tiny")
    cfg = Learn2DissRecipeConfig()
    obj = Learn2DissObjective(m, "k", "u", 5, cfg, club=m.build_club(32)).train()
    B, S, T = 8, 16000, 49
    wav, g = speechlike(B, S)
    batch = {"wav": wav, "wav_len": torch.full((B,), S), "wav_b": wav.flip(1), "wav_b_len": torch.full((B,), S),
             "labels.k": torch.randint(0, 5, (B, T), generator=g), "labels_b.k": torch.randint(0, 5, (B, T), generator=g),
             "utt_labels.u": torch.randint(0, 5, (B,), generator=g)}
    cache = obj(batch).cache
    opt = torch.optim.Adam(obj.club.parameters(), 1e-3)
    for _ in range(100):                                   # the estimator steps of the alternation
        opt.zero_grad()
        obj.aux_loss(cache).backward()
        opt.step()
    params = list(m.utterance_encoder.parameters())

    def grads(weight):
        obj.w = obj.w[:3] + (weight,)
        torch.manual_seed(5)                               # the same CLUB permutation each time
        gs = torch.autograd.grad(obj(batch).loss, params, allow_unused=True)
        return torch.cat([x.flatten() for x in gs if x is not None])

    g0 = grads(0.0)
    assert float((grads(cfg.club_weight) - g0).norm() / g0.norm()) >= 0.008


# ------------------------------------------------------------------------------ JOOCI
def jooci_batch(B=2, S=8000, k=7, seed=0):
    wav, g = speechlike(B, S, seed)
    T = 24
    return {"wav": wav, "wav_len": torch.tensor([S, S - 2000]), "teacher": torch.randn(B, 8, generator=g),
            "labels.a": torch.randint(0, k, (B, T), generator=g)}


def test_jooci_stage1_trains_only_the_other_side():
    """Paper, appendix A.1: shared CNN + content encoder frozen first; then everything trains."""
    from pretrain.recipes.jooci_compact import JoociObjective, JoociRecipeConfig
    torch.manual_seed(0)
    m = build_model("jooci", "tiny")
    pairs = [(1, "a", 7), (2, "a", 7)]
    obj = JoociObjective(m, pairs, JoociRecipeConfig(), 32, stage=1).train()
    assert not m.content_encoder.training                     # frozen part: eval mode (no dropout)
    obj(jooci_batch()).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in m.content_encoder.parameters())
    for part in (m.other_encoder, m.pool, m.fc, m.decoder):
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in part.parameters())
    trainable = {id(p) for p in obj.parameters() if p.requires_grad}   # what the trainer optimises
    assert not trainable & {id(p) for p in m.content_encoder.parameters()}

    obj2 = JoociObjective(m, pairs, JoociRecipeConfig(), 32, stage=2).train()
    m.zero_grad(set_to_none=True)
    obj2(jooci_batch()).loss.backward()
    assert m.content_encoder.training
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in m.content_encoder.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in m.content_encoder.frontend.parameters())


def test_jooci_w_reg_weights_the_decoder_term_and_zero_turns_it_off():
    import pytest
    from pretrain.recipes.common import RecipeError
    from pretrain.recipes.jooci_compact import JoociObjective, JoociRecipeConfig, check
    pairs = [(1, "a", 7), (2, "a", 7)]
    for w in (1.0, 0.0):
        torch.manual_seed(0)
        m = build_model("jooci", "tiny")
        obj = JoociObjective(m, pairs, JoociRecipeConfig(w_reg=w), 32, stage=1).train()
        out = obj(jooci_batch())
        torch.testing.assert_close(out.loss, out.parts["other_distill"] + w * out.parts["reg_decoder"])
        out.loss.backward()
        moved = any(p.grad is not None and p.grad.abs().max() > 0 for p in m.decoder.parameters())
        assert moved == (w > 0)
    with pytest.raises(RecipeError, match="w_reg"):
        check(JoociRecipeConfig(init_ckpt="", w_reg=-1.0))


def test_jooci_stage2_shared_frozen_keeps_content_layer0_as_initialised():
    """stage2_shared=frozen: after a stage-2 step content layer 0 is unchanged, the layers above it moved."""
    import pytest
    from pretrain.recipes.common import RecipeError
    from pretrain.recipes.jooci_compact import JoociObjective, JoociRecipeConfig, check
    pairs = [(1, "a", 7), (2, "a", 7)]
    torch.manual_seed(0)
    m = build_model("jooci", "tiny")
    obj = JoociObjective(m, pairs, JoociRecipeConfig(stage2_shared="frozen"), 32, stage=2).train()
    frozen = {id(p) for part in m.content_encoder.bottom_modules(1) for p in part.parameters()}
    assert frozen and not frozen & {id(p) for p in obj.parameters() if p.requires_grad}   # not optimised
    wav, n = torch.randn(1, 8000, generator=torch.Generator().manual_seed(3)), torch.tensor([8000])
    m.eval()
    with torch.no_grad():
        before = m(wav, n).content
    m.train()
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.1)
    obj(jooci_batch()).loss.backward()
    opt.step()
    m.eval()
    with torch.no_grad():
        after = m(wav, n).content
    torch.testing.assert_close(after[0], before[0], atol=0, rtol=0)
    assert not torch.allclose(after[-1], before[-1])
    with pytest.raises(RecipeError, match="stage2_shared"):
        check(JoociRecipeConfig(init_ckpt="", stage2_shared="half"))
    c = JoociRecipeConfig(stage2_shared="content")             # detached from the other side in stage 2 only
    assert [JoociObjective(build_model("jooci", "tiny"), pairs, c, 32, stage=k).shared_from_content_only
            for k in (1, 2)] == [False, True]


def test_jooci_content_perturb_reaches_the_content_encoder_in_stage2_only():
    """content_perturb: stage 2's content loss is computed on the warped copy (wav_a2), not the clean crop."""
    import pytest
    from pretrain.augment import SpeakerPerturbConfig
    from pretrain.recipes.common import RecipeError
    from pretrain.recipes.jooci_compact import JoociObjective, JoociRecipeConfig, check
    pairs = [(1, "a", 7), (2, "a", 7)]
    batch = jooci_batch()
    warped = dict(batch, wav_a2=batch["wav"].flip(1))
    losses = {}
    for stage in (1, 2):
        for name, b in (("clean", batch), ("warped", warped)):
            torch.manual_seed(0)
            m = build_model("jooci", "tiny").eval()
            obj = JoociObjective(m, pairs, JoociRecipeConfig(), 32, stage=stage)
            m.eval()
            torch.manual_seed(1)                                  # the same span mask
            losses[stage, name] = obj(b).parts
    assert losses[1, "clean"]["other_distill"] == losses[1, "warped"]["other_distill"]   # stage 1 ignores it
    assert losses[2, "clean"]["content"] != losses[2, "warped"]["content"]
    for bad in (dict(prob=1.5), dict(prob=0.5, alpha=(1.2, 0.9))):
        with pytest.raises(RecipeError, match="content_perturb"):
            check(JoociRecipeConfig(init_ckpt="", content_perturb=SpeakerPerturbConfig(**bad)))


def test_jooci_other_blocks_start_by_passing_their_own_stream():
    """At init a block's depthwise conv reads its own (other) frame, not the DF content taps."""
    from upstream.nn.other_encoder import OtherEncoderBlock
    torch.manual_seed(0)
    blk = OtherEncoderBlock(8, factor=4, scale=4).eval()
    x = torch.randn(2, 8, 5)
    with torch.no_grad():
        a = blk(x, torch.randn(2, 8, 20), None, None)
        b = blk(x, 10 * torch.randn(2, 8, 20), None, None)
    torch.testing.assert_close(a, b)
    # and the content taps can still learn: they receive a gradient
    blk.train()
    blk(x, torch.randn(2, 8, 20), None, None).pow(2).sum().backward()
    assert blk.depthwise.weight.grad[:, :, :-1].abs().max() > 0


def test_jooci_teacher_targets_centred_and_whitened():
    import numpy as np
    from pretrain.teachers import whiten_targets
    rng = np.random.default_rng(0)
    # d-vector-like targets: one shared direction dominating speaker differences (cosine ~0.8 to the mean)
    spk = rng.normal(size=(40, 32))
    raw = 4.0 + np.repeat(spk, 10, axis=0) + 0.3 * rng.normal(size=(400, 32))
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    out, st = whiten_targets(raw)
    assert st["cos_to_mean_before"] > 0.75 and abs(st["cos_to_mean_after"]) < 0.1
    assert out.shape == raw.shape and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    cov = np.cov(out.T)
    ev = np.linalg.eigvalsh(cov)
    assert ev.max() / ev.min() < 10                         # raw: one direction holds most variance
    ev_raw = np.linalg.eigvalsh(np.cov(raw.T))
    assert ev_raw.max() / ev_raw.min() > 10


def _speaker_share(x, spk):
    import numpy as np
    x = x - x.mean(0)
    means = np.stack([x[spk == s].mean(0) for s in np.unique(spk)])
    return float((means[np.searchsorted(np.unique(spk), spk)] ** 2).sum() / (x ** 2).sum())


def test_jooci_teacher_pca_keeps_the_speaker_directions():
    """Few speakers, many dimensions: whitening every direction lets within-speaker noise dominate
    the targets; whitening the top principal components keeps them speaker targets."""
    import numpy as np
    import pytest
    from pretrain.teachers import TeacherError, whiten_targets
    rng = np.random.default_rng(1)
    spk = np.repeat(np.arange(20), 12)
    basis = np.linalg.qr(rng.normal(size=(64, 64)))[0]
    z = np.zeros((240, 64))
    z[:, :6] = 3.0 * rng.normal(size=(20, 6))[spk]               # speakers differ in 6 strong directions
    z += 0.5 * rng.normal(size=(240, 64))                          # within-speaker variation everywhere
    raw = 2.0 + z @ basis
    full, _ = whiten_targets(raw)
    top, st = whiten_targets(raw, dims=6)
    assert top.shape == (240, 6) and np.allclose(np.linalg.norm(top, axis=1), 1.0, atol=1e-5)
    assert _speaker_share(top, spk) > 0.8 > 0.4 > _speaker_share(full, spk)
    assert 0.5 < st["variance_kept"] < 1.0
    assert whiten_targets(raw)[1]["variance_kept"] == 1.0
    with pytest.raises(TeacherError, match="teacher_pca=65"):
        whiten_targets(raw, dims=65)


def test_jooci_teacher_pca_needs_whitening():
    import pytest
    from pretrain.recipes.common import RecipeError
    from pretrain.recipes.jooci_compact import JoociRecipeConfig, check
    for bad in (dict(teacher_pca=-1), dict(teacher_pca=8, teacher_whiten=False)):
        with pytest.raises(RecipeError, match="teacher_pca"):
            check(JoociRecipeConfig(init_ckpt="", **bad))


# ------------------------------------------------------------------------------ Barlow Twins
def test_barlow_twins_utterance_term_is_full_rank_at_the_default_batch():
    """Default recipe + compact preset + default batch: the utterance term's cross-correlation has
    rank equal to its dimension (was: 512 x 512 from 8 crops, rank <= 7)."""
    from pretrain.recipes.barlow_twins_compact import BarlowTwinsObjective, BarlowTwinsRecipeConfig, check
    cfg = BarlowTwinsRecipeConfig()
    check(cfg)
    torch.manual_seed(0)
    m = build_model("barlow_twins", cfg.preset).train()
    obj = BarlowTwinsObjective(m, cfg)
    B, S = cfg.data.batch_size, int(cfg.data.crop_s * 16000)
    wav, g = speechlike(B, S)
    lens = torch.full((B,), S)
    with torch.no_grad():
        a = obj._encode(wav, lens)
        b = obj._encode(wav + 0.01 * torch.randn(B, S, generator=g), lens)
        za, zb = obj.utt_pairs(a, b)
    c = obj.bt.cross_correlation(za, zb)
    D = preset_config("barlow_twins", cfg.preset).projector_dims[-1]
    assert c.shape == (D, D) and int(torch.linalg.matrix_rank(c.double())) == D


def test_barlow_twins_check_refuses_a_rank_limited_config():
    import pytest
    from pretrain.recipes.barlow_twins_compact import BarlowTwinsRecipeConfig, check
    from pretrain.recipes.common import RecipeError, apply_overrides
    with pytest.raises(RecipeError, match="rank <= 7"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), ["utt_rows=utterances"]))


def test_resemblyzer_teacher_survives_an_utterance_that_vad_empties():
    """Near-silence: resemblyzer's VAD trims (almost) everything, so the teacher falls back to the
    untrimmed, volume-normalised signal (resemblyzer 0.1.4's preprocess_wav has no trim switch)."""
    import numpy as np
    from resemblyzer import preprocess_wav

    from pretrain.teachers import untrimmed
    from upstream.facts import SAMPLE_RATE

    w = (np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 1e-4).astype(np.float32)
    assert len(preprocess_wav(w, source_sr=SAMPLE_RATE)) < SAMPLE_RATE * 0.5
    x = untrimmed(w)
    assert len(x) == SAMPLE_RATE and np.isfinite(x).all() and np.abs(x).max() > np.abs(w).max()


def test_barlow_twins_split_mode_pairs_other_words_for_the_other_stream_and_warped_frames_for_content():
    """views_mode=split: the utterance term sees two crops that share no sample, and the frame term
    pairs view A with its aligned copy ``wav_a2``, not with view B (views_mode=perturb: one crop
    perturbed twice feeds both terms, so the other stream's positives share their words)."""
    from pretrain.data import CropBatches
    from pretrain.recipes.barlow_twins_compact import BarlowTwinsObjective, BarlowTwinsRecipeConfig, check
    from tests.test_pretrain_data import LENGTHS, fake_bank

    from pretrain.recipes.common import apply_overrides
    cfg = apply_overrides(BarlowTwinsRecipeConfig(preset="tiny"),
                          ["views_mode=split", "data.same_crop=false", "frame_layer=2", "data.batch_size=8"])
    check(cfg)
    assert cfg.data.disjoint_views
    b = CropBatches(fake_bank(LENGTHS[2:]), cfg.data, seed=0, aligned_augment=lambda w, g: w).get(0, 0)
    for j in range(len(b["utt"])):
        a0, a1 = int(b["start"][j]), int(b["start"][j] + b["wav_len"][j])
        b0, b1 = int(b["start_b"][j]), int(b["start_b"][j] + b["wav_b_len"][j])
        assert a1 <= b0 or b1 <= a0
    torch.manual_seed(0)
    obj = BarlowTwinsObjective(build_model("barlow_twins", cfg.preset).eval(), cfg)
    obj.w_utt = 0.0                                                    # the frame term alone
    with torch.no_grad():
        same = obj(b).parts["bt_frame"]                                # wav_a2 == wav: perfect pairs
        other = obj({**b, "wav_a2": b["wav_b"]}).parts["bt_frame"]     # partner from the other crop
        moved_b = obj({**b, "wav_b": b["wav_b"].flip(1)}).parts["bt_frame"]
    assert float(same) < float(other)
    torch.testing.assert_close(same, moved_b)                         # view B does not enter it


def test_barlow_twins_check_refuses_inconsistent_views():
    import pytest
    from pretrain.recipes.barlow_twins_compact import BarlowTwinsRecipeConfig, check
    from pretrain.recipes.common import RecipeError, apply_overrides
    with pytest.raises(RecipeError, match="data.same_crop=False"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), ["views_mode=split"]))
    with pytest.raises(RecipeError, match="data.same_crop=True"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), ["data.same_crop=false"]))
    with pytest.raises(RecipeError, match="frame_layer=9"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), ["frame_layer=9"]))
    check(apply_overrides(BarlowTwinsRecipeConfig(), ["views_mode=split", "data.same_crop=false", "frame_layer=2"]))
    for bad, msg in ((["voice_perturb.prob=1", "voice_perturb.alpha=1.4,0.7"], "voice_perturb"),
                     (["voice_perturb.prob=2"], "voice_perturb.prob=2")):
        with pytest.raises(RecipeError, match=msg):
            check(apply_overrides(BarlowTwinsRecipeConfig(), bad))
    check(apply_overrides(BarlowTwinsRecipeConfig(), ["voice_perturb.prob=1", "voice_perturb.alpha=0.7,1.4"]))


def test_every_recipes_formant_warp_is_checked_before_any_work():
    """A reversed warp range or a prob outside [0, 1] in any recipe's warp option (hubert's and Barlow
    Twins' speaker_perturb, Barlow Twins' voice_perturb, JOOCI's content_perturb) is refused by check(),
    naming the option: hubert-compact used to find a reversed range only after its MFCC k-means, and
    took prob=2 as 'always'."""
    from pretrain.recipes import barlow_twins_compact as bt, hubert_compact as hb, jooci_compact as jo
    from pretrain.recipes.common import apply_overrides

    cases = ((hb, hb.HubertRecipeConfig(), "speaker_perturb"), (bt, bt.BarlowTwinsRecipeConfig(), "speaker_perturb"),
             (bt, bt.BarlowTwinsRecipeConfig(), "voice_perturb"), (jo, jo.JoociRecipeConfig(init_ckpt=""), "content_perturb"))
    for mod, cfg, opt in cases:
        for bad, msg in (([f"{opt}.alpha=1.4,0.7"], f"{opt}.alpha=1.4,0.7"), ([f"{opt}.prob=2"], f"{opt}.prob=2")):
            with pytest.raises(ValueError, match=msg.replace(".", r"\.")):
                mod.check(apply_overrides(cfg, bad))
        mod.check(apply_overrides(cfg, [f"{opt}.prob=1", f"{opt}.alpha=0.7,1.4"]))


def test_barlow_twins_content_layers_split_the_streams_by_layer():
    """content_layers=k: content = H_0..H_k, other = H_{k+1}..H_L each pooled over DF frames, and the
    utterance term's rows come from the top layer; 0 (every bundled config before it) keeps content =
    every layer, other = pooled H_L. check refuses a frame term outside the content stream and a frozen
    bottom without init_ckpt or without a trained content layer."""
    import pytest
    from pretrain.recipes.barlow_twins_compact import BarlowTwinsRecipeConfig, check
    from pretrain.recipes.common import RecipeError, apply_overrides
    from upstream.models.barlow_twins import BARLOW_TWINS_TINY, BarlowTwins
    from upstream.nn.other_encoder import masked_avg_pool

    wav, n = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0)), torch.tensor([8000, 5000])
    torch.manual_seed(0)
    whole = BarlowTwins.from_config(BARLOW_TWINS_TINY).eval()
    split = BarlowTwins.from_config(dataclasses.replace(BARLOW_TWINS_TINY, content_layers=1)).eval()
    split.load_state_dict(whole.state_dict())
    with torch.no_grad():
        a, b = whole(wav, n), split(wav, n)
    assert (len(a.content), len(a.other), len(b.content), len(b.other)) == (3, 1, 2, 1)
    for x, y in zip(b.content, a.content[:2]):
        assert torch.equal(x, y)
    assert torch.equal(b.other[0], a.other[0])           # H_2 pooled either way (tiny: H_0..H_2)
    pooled_h1 = masked_avg_pool(a.content[1], a.content_len, whole.other_downsample)[0]
    assert not torch.equal(b.other[0], pooled_h1)
    with pytest.raises(ValueError, match="content_layers=2"):
        BarlowTwins.from_config(dataclasses.replace(BARLOW_TWINS_TINY, content_layers=2))
    base = ["preset=tiny", "data.batch_size=8"]
    check(apply_overrides(BarlowTwinsRecipeConfig(), base + ["content_layers=1", "frame_layer=1"]))
    with pytest.raises(RecipeError, match="frame_layer=-1 with content_layers=1"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), base + ["content_layers=1"]))
    with pytest.raises(RecipeError, match="content_layers=2"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), base + ["content_layers=2", "frame_layer=1"]))
    with pytest.raises(RecipeError, match="init_ckpt is empty"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), base + ["freeze_layers=1"]))
    hub = ["init_ckpt=checkpoints/hubert-compact", "content_layers=2", "frame_layer=2"]
    check(apply_overrides(BarlowTwinsRecipeConfig(), base[1:] + hub + ["freeze_layers=2"]))
    with pytest.raises(RecipeError, match="freeze_layers=3: use 0..2"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), base[1:] + hub + ["freeze_layers=3"]))


@pytest.mark.parametrize("detach", [True, False])
def test_barlow_twins_detach_content_keeps_the_utterance_term_out_of_the_content_layers(detach):
    """detach_content=true (content_layers=1, tiny: content H_0..H_1, other pooled H_2): the utterance term
    alone reaches the top layer only; without it, its gradient flows into the content layers too."""
    from pretrain.data import CropBatches
    from pretrain.recipes.barlow_twins_compact import BarlowTwinsObjective, BarlowTwinsRecipeConfig, check, model_config
    from pretrain.recipes.common import RecipeError, apply_overrides
    from tests.test_pretrain_data import LENGTHS, fake_bank

    cfg = apply_overrides(BarlowTwinsRecipeConfig(), ["preset=tiny", "data.batch_size=8", "content_layers=1",
                                                      "frame_layer=1", f"detach_content={str(detach).lower()}",
                                                      "w_frame=0", "other_downsample=2"])
    check(cfg)
    torch.manual_seed(0)
    model = build_model("barlow_twins", model_config(cfg, None)).train()
    assert model.other_downsample == 2
    b = CropBatches(fake_bank(LENGTHS[2:]), cfg.data, seed=0).get(0, 0)
    BarlowTwinsObjective(model, cfg)(b).loss.backward()

    def moved(mod):
        return any(p.grad is not None and p.grad.abs().max() > 0 for p in mod.parameters())

    enc = model.encoder
    assert moved(enc.encoder.layers[1])
    assert moved(enc.encoder.layers[0]) == (not detach) and moved(enc.frontend) == (not detach)
    with pytest.raises(RecipeError, match="set content_layers too"):
        check(apply_overrides(BarlowTwinsRecipeConfig(), ["preset=tiny", "data.batch_size=8", "detach_content=true"]))
