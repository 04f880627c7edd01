"""ABX: known answers, equality with a slow loop implementation, Libri-light agreement, errors."""
from __future__ import annotations

import itertools
import math

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.abx import (ABXConfig, ItemFileError, MissingFeaturesError, abx, build_plan, dtw_batch,
                          frame_range, read_item_file, slice_items)


# ---------------------------------------------------------------- slow reference (plain loops)

def _slow_dtw(d: np.ndarray) -> float:
    n, m = d.shape
    c = np.zeros((n, m), np.float32)
    c[0, 0] = d[0, 0]
    for i in range(1, n):
        c[i, 0] = d[i, 0] + c[i - 1, 0]
    for j in range(1, m):
        c[0, j] = d[0, j] + c[0, j - 1]
    for i in range(1, n):
        for j in range(1, m):
            c[i, j] = d[i, j] + min(c[i - 1, j], c[i - 1, j - 1], c[i, j - 1])
    i, j, plen = n - 1, m - 1, 1
    while i > 0 and j > 0:
        up, left, diag = c[i - 1, j], c[i, j - 1], c[i - 1, j - 1]
        if diag <= left and diag <= up:
            i, j = i - 1, j - 1
        elif left <= up:
            j -= 1
        else:
            i -= 1
        plen += 1
    plen += i + j
    return float(np.float32(c[n - 1, m - 1] / np.float32(plen)))


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _d(x, y):
    return _slow_dtw((np.arccos(np.clip(_unit(x) @ _unit(y).T, -1, 1)) / math.pi).astype(np.float32))


def slow_abx(feats, phone, context, speaker):
    """Triphone ABX without subsampling, written from the protocol's definition."""
    tokens: dict = {}
    for k, (p, c, s) in enumerate(zip(phone, context, speaker)):
        tokens.setdefault((c, s, p), []).append(k)

    def theta(X, A, B, same):
        num = den = 0.0
        for x in X:
            for a in A:
                if same and a == x:
                    continue
                for b in B:
                    dxa, dxb = _d(feats[x], feats[a]), _d(feats[x], feats[b])
                    num += 1.0 if dxa < dxb else 0.5 if dxa == dxb else 0.0
                    den += 1
        return num / den

    within, across = {}, {}
    for (c, s, pa), A in tokens.items():
        for (c2, s2, pb), B in tokens.items():
            if c2 != c or s2 != s or pb == pa:
                continue
            if len(A) > 1:
                within.setdefault((pa, pb), {}).setdefault(s, []).append(1 - theta(A, A, B, True))
            for (c3, t, p3), X in tokens.items():
                if c3 == c and p3 == pa and t != s:
                    across.setdefault((pa, pb), {}).setdefault(s, []).append(1 - theta(X, A, B, False))

    def agg(d):
        return 100 * float(np.mean([np.mean([np.mean(v) for v in by_s.values()]) for by_s in d.values()]))

    return agg(within), agg(across)


def _random_items(rng, n_spk=3, n_ctx=2, n_ph=3, per=(1, 4), dim=6, sep=0.0):
    feats, phone, context, speaker = [], [], [], []
    centres = rng.standard_normal((n_ph, dim))
    for s, c, p in itertools.product(range(n_spk), range(n_ctx), range(n_ph)):
        for _ in range(rng.integers(per[0], per[1] + 1)):
            t = int(rng.integers(1, 7))
            feats.append(torch.tensor(sep * centres[p] + rng.standard_normal((t, dim)), dtype=torch.float32))
            phone.append(p), context.append(c), speaker.append(s)
    return feats, phone, context, speaker


# ---------------------------------------------------------------- tests

def test_dtw_batch_matches_loop():
    rng = np.random.default_rng(1)
    mats = [rng.random((rng.integers(1, 9), rng.integers(1, 9))).astype(np.float32) for _ in range(40)]
    mats.append(np.full((4, 6), 0.25, np.float32))                  # all ties
    n = torch.tensor([m.shape[0] for m in mats])
    m = torch.tensor([m.shape[1] for m in mats])
    pad = torch.zeros(len(mats), int(n.max()), int(m.max()))
    for k, x in enumerate(mats):
        pad[k, :x.shape[0], :x.shape[1]] = torch.from_numpy(x)
    got = dtw_batch(pad, n, m).numpy()
    want = np.array([_slow_dtw(x) for x in mats], np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_equal_to_slow_loop_implementation():
    rng = np.random.default_rng(0)
    feats, phone, context, speaker = _random_items(rng, sep=0.7)
    got = abx(feats, phone, context, speaker, ABXConfig(device="cpu"))
    want = slow_abx([f.numpy() for f in feats], phone, context, speaker)
    assert got.n_within_cells > 0 and got.n_across_cells > 0
    assert abs(got.within - want[0]) < 1e-6 and abs(got.across - want[1]) < 1e-6
    assert 0 < got.within < 50                          # informative but not perfect features


def test_separable_is_zero_and_identical_is_fifty():
    rng = np.random.default_rng(2)
    feats, phone, context, speaker = _random_items(rng, n_spk=4, per=(2, 12), dim=8)
    sep = [torch.nn.functional.one_hot(torch.full((len(f),), p), 8).float() + 0.01 * torch.rand(len(f), 8)
           for f, p in zip(feats, phone)]
    r = abx(sep, phone, context, speaker)
    assert r.within == 0.0 and r.across == 0.0
    same = [torch.nn.functional.one_hot(torch.zeros(len(f), dtype=torch.long), 8).float() for f in feats]
    r = abx(same, phone, context, speaker)
    assert r.within == pytest.approx(50.0) and r.across == pytest.approx(50.0)


def test_subsampling_is_seeded_and_bounded():
    rng = np.random.default_rng(3)
    feats, phone, context, speaker = _random_items(rng, n_spk=7, n_ctx=1, n_ph=2, per=(12, 14))
    cfg = ABXConfig(max_size_group=10, max_x_across=5, seed=1)
    plan = build_plan(phone, context, speaker, cfg)
    assert (plan.within.a >= 0).sum(1).max() == 10 and (plan.across.x >= 0).sum(1).max() == 10
    # 7 speakers, max 5 x-speakers per (a, b): 7 speakers * 2 ordered phone pairs * 5
    assert len(plan.across.speaker) == 7 * 2 * 5
    a, b = abx(feats, phone, context, speaker, cfg), abx(feats, phone, context, speaker, cfg)
    assert a == b
    c = abx(feats, phone, context, speaker, ABXConfig(seed=2))
    assert c != a


def test_frame_range_variants():
    # 50 Hz: frame centres at 0.01, 0.03, 0.05, ...; segment [0.02, 0.08] holds centres 0.03 0.05 0.07
    assert frame_range(0.02, 0.08, 50, 100, "fastabx") == (1, 4)
    assert frame_range(0.02, 0.08, 50, 100, "librilight") == (1, 3)     # drops the last frame
    assert frame_range(0.0, 10.0, 50, 7, "fastabx") == (0, 7)           # clipped to the file


def test_item_file_errors_and_slicing(tmp_path):
    p = tmp_path / "dev.item"
    p.write_text("#file onset offset #phone prev-phone next-phone speaker\n"
                 "f1 0.10 0.30 a sil b spk1\nf1 0.2 0.35 b a sil spk1\nf2 0.1 0.2 a sil b spk2\n")
    t = read_item_file(p)
    assert len(t) == 3 and t.phone_names == ["a", "b"] and t.context_names == ["sil+b", "a+sil"]
    frames = {"f1": np.ones((40, 3)), "f2": np.ones((40, 3))}
    feats, kept = slice_items(t, frames.__getitem__, rate=100)
    assert [len(f) for f in feats] == [19, 14, 9] and list(kept) == [0, 1, 2]
    with pytest.raises(MissingFeaturesError, match="f2"):
        slice_items(t, {"f1": np.ones((40, 3))}.__getitem__, rate=100)
    bad = tmp_path / "bad.item"
    bad.write_text("#file onset offset #phone prev-phone next-phone speaker\nf1 0.1 0.3 a sil b spk1\n"
                   "f1 0.1 0.3 a sil spk1\n")
    with pytest.raises(ItemFileError, match=r"bad.item:3: expected 7 columns"):
        read_item_file(bad)
    bad.write_text("#h\nf1 0.1 0.3 a sil b s\nf1 0.1 x a sil b s\n")
    with pytest.raises(ItemFileError, match=r":3: onset/offset must be numbers"):
        read_item_file(bad)
    bad.write_text("#h\nf1 0.3 0.1 a sil b s\n")
    with pytest.raises(ItemFileError, match=r":2: need 0 <= onset < offset"):
        read_item_file(bad)


@pytest.mark.parametrize("case", json.loads((Path(__file__).parent / "data" / "abx_librilight.json").read_text())["cases"],
                         ids=lambda c: f"n{c['n_files']}-seed{c['seed']}")
def test_agrees_with_librilight_package(tmp_path, case):
    """Same features, items and seed as zerospeech-libriabx2, whose scores on these seeded cases are
    stored in tests/data/abx_librilight.json (remade by `python -m tests.make_abx_fixture`)."""
    from bench.abx_reference import synthetic_case

    ours = synthetic_case(tmp_path, n_files=case["n_files"], seed=case["seed"]).ours()
    assert abs(ours.within - case["within"]) < 1e-3 and abs(ours.across - case["across"]) < 1e-3


def test_plan_reused_across_layers_and_packed_features():
    """One plan (its pair index cached on first use) scores several feature sets exactly as fresh
    plans do, and packed ItemFeatures score exactly as the list of per-item tensors."""
    from analysis.abx import ItemFeatures, abx_scores
    rng = np.random.default_rng(5)
    feats, phone, context, speaker = _random_items(rng, n_spk=4, per=(2, 12), dim=5, sep=0.6)
    layers = [feats, [f * 0 + torch.randn_like(f) for f in feats], [f.flip(0) for f in feats]]
    cfg = ABXConfig(device="cpu")
    shared = build_plan(phone, context, speaker, cfg)
    for layer in layers:
        fresh = abx(layer, phone, context, speaker, cfg)
        again = abx_scores(ItemFeatures.pack(layer), shared, cfg)
        assert (again.within, again.across) == (fresh.within, fresh.across)
    packed = ItemFeatures.pack(feats)
    assert len(packed) == len(feats) and all(torch.equal(packed[i], feats[i]) for i in range(len(feats)))
    assert torch.equal(packed[np.int64(1)], feats[1]) and torch.equal(packed[-1], feats[-1])


def _items(tmp_path, lines, name="dev.item"):
    p = tmp_path / name
    p.write_text("#file onset offset #phone prev-phone next-phone speaker\n" + "".join(l + "\n" for l in lines))
    return p


def test_nonfinite_features_name_file_and_line(tmp_path):
    """A NaN in an item's frames moved within-speaker ABX 21.1 -> 17.8 with exit 0; now refused."""
    from analysis.checks import NonFiniteFeaturesError
    t = read_item_file(_items(tmp_path, ["f1 0.10 0.30 a sil b spk1", "f2 0.1 0.2 a sil b spk2",
                                         "f2 0.25 0.35 b a sil spk2"]))
    f2 = np.ones((40, 3))
    f2[30, 1] = np.nan  # inside the third item (frames 25..34), not the second
    frames = {"f1": np.ones((40, 3)), "f2": f2}
    with pytest.raises(NonFiniteFeaturesError, match=r"1 file\(s\).*1 item\(s\): f2 \(.*dev.item:4\)") as e:
        slice_items(t, frames.__getitem__, rate=100)
    assert "dev.item:3" not in str(e.value) and "re-extract" in str(e.value)
    f2[30, 1] = np.inf
    with pytest.raises(NonFiniteFeaturesError):
        slice_items(t, frames.__getitem__, rate=100)
    f2[30, 1] = 1.0
    f2[39, 0] = np.nan  # outside every item: the score does not see it
    feats, kept = slice_items(t, frames.__getitem__, rate=100)
    assert list(kept) == [0, 1, 2]


def test_item_past_the_end_of_its_file_is_refused(tmp_path):
    """An item at 999 s of a 0.4 s file was silently dropped; now refused with its line."""
    from analysis.checks import SegmentOutsideFileError
    t = read_item_file(_items(tmp_path, ["f1 0.10 0.30 a sil b spk1", "f1 998 999 b a sil spk1",
                                         "f1 0.3 0.41 a sil b spk1"]))
    with pytest.raises(SegmentOutsideFileError, match=r"1 item\(s\).*dev.item:3: f1 998-999 s \(its features end at 0.40 s\)"):
        slice_items(t, {"f1": np.ones((40, 3))}.__getitem__, rate=100)
    # an item ending just past the last frame (a model's frames stop before the audio does) is fine
    ok = read_item_file(_items(tmp_path, ["f1 0.10 0.30 a sil b spk1", "f1 0.3 0.43 a sil b spk1"], "ok.item"))
    assert len(slice_items(ok, {"f1": np.ones((40, 3))}.__getitem__, rate=100)[1]) == 2


@pytest.mark.parametrize("name", ["../../VoxCeleb1/wav/id1/a", "/etc/passwd", "~/x", "a/../../b", "..\\x"])
def test_item_file_path_leaving_the_audio_dir_is_refused(tmp_path, name):
    p = _items(tmp_path, ["f1 0.1 0.3 a sil b spk1", f"{name} 0.1 0.3 a sil b spk1"])
    with pytest.raises(ItemFileError, match=r"dev.item:3: file .* leaves the audio directory"):
        read_item_file(p)


def test_item_file_ids_with_dots_and_folders_are_fine(tmp_path):
    t = read_item_file(_items(tmp_path, ["spk1/a..b 0.1 0.3 a sil b spk1", "x.y 0.1 0.3 a sil b spk1"]))
    assert t.file == ["spk1/a..b", "x.y"]


def test_binary_item_file_names_the_line(tmp_path):
    p = tmp_path / "bin.item"
    p.write_bytes(b"#file onset offset #phone prev next speaker\nf1 0.1 0.3 a sil b s\n\xff\xfe\x00garbage\n")
    with pytest.raises(ItemFileError, match=r"bin.item:3: not UTF-8 text"):
        read_item_file(p)
    p.write_bytes(b"")
    with pytest.raises(ItemFileError, match="no items"):
        read_item_file(p)
