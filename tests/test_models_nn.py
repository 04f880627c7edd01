"""Building blocks: CLUB, pooling, GRL, other-encoder pieces, masked ECAPA (fast, CPU)."""
import pytest
import torch

from upstream.nn.club import CLUBSample
from upstream.nn.ecapa import MaskedECAPA
from upstream.nn.grl import GradientReversal
from upstream.nn.masked_norm import MaskedBatchNorm1d, use_masked_batchnorm
from upstream.nn.masking import lengths_to_mask
from upstream.nn.other_encoder import masked_avg_pool, split_and_append
from upstream.nn.pooling import AttentiveStatsPool
from upstream.nn.res2net import Res2NetBlock


def _train_club(x, y, steps=300, seed=0):
    """Fit q(y|x) on the first half, estimate on the held-out second half."""
    torch.manual_seed(seed)
    n = x.shape[0] // 2
    club = CLUBSample(x.shape[1], y.shape[1], hidden=32)
    opt = torch.optim.Adam(club.parameters(), lr=5e-3)
    for _ in range(steps):
        opt.zero_grad()
        club.learning_loss(x[:n], y[:n]).backward()
        opt.step()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        return torch.stack([club(x[n:], y[n:], generator=g) for _ in range(10)]).mean().item()


def test_club_near_zero_on_independent_and_positive_on_dependent():
    g = torch.Generator().manual_seed(0)
    n, d = 4096, 4
    x = torch.randn(n, d, generator=g)
    y_ind = torch.randn(n, d, generator=g)
    y_dep = x @ torch.randn(d, d, generator=g) + 0.3 * torch.randn(n, d, generator=g)
    mi_ind = _train_club(x, y_ind)
    mi_dep = _train_club(x, y_dep)
    assert abs(mi_ind) < 0.3, mi_ind
    assert mi_dep > 2.0, mi_dep


def test_club_sequence_targets_respect_mask():
    torch.manual_seed(0)
    club = CLUBSample(3, 2, hidden=8)
    x, y = torch.randn(4, 3), torch.randn(4, 6, 2)
    mask = lengths_to_mask(torch.tensor([6, 3, 2, 1]), 6)
    y2 = y.clone()
    y2[~mask] = 1e3
    torch.testing.assert_close(club.learning_loss(x, y, mask), club.learning_loss(x, y2, mask))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    torch.testing.assert_close(club(x, y, mask, generator=g1), club(x, y2, mask, generator=g2))


def test_gradient_reversal():
    x = torch.randn(5, requires_grad=True)
    (GradientReversal(0.1)(x) * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5,), -0.2))


def test_attentive_pooling_ignores_padding():
    torch.manual_seed(0)
    pool = AttentiveStatsPool(6, attention_channels=4).eval()
    x = torch.randn(2, 6, 10)
    mask = lengths_to_mask(torch.tensor([10, 4]), 10)
    x2 = x.clone()
    x2[1, :, 4:] = 50.0
    torch.testing.assert_close(pool(x, mask), pool(x2, mask))
    torch.testing.assert_close(pool(x, mask)[1], pool(x[1:, :, :4], mask[1:, :4])[0], atol=1e-5, rtol=1e-5)


def test_res2net_masked_equals_unpadded():
    torch.manual_seed(0)
    blk = Res2NetBlock(8, scale=4, kernel_size=3, dilation=4).eval()
    x = torch.randn(1, 8, 12)
    padded = torch.cat([x, torch.randn(1, 8, 5)], -1)
    mask = lengths_to_mask(torch.tensor([12]), 17)
    torch.testing.assert_close(blk(padded, mask)[..., :12], blk(x, lengths_to_mask(torch.tensor([12]), 12)))


def test_masked_avg_pool_and_split_and_append():
    x = torch.arange(10.0).view(1, 10, 1).repeat(2, 1, 1)
    pooled, n = masked_avg_pool(x, torch.tensor([10, 7]), 4)
    assert n.tolist() == [3, 2]
    assert pooled[0, :, 0].tolist() == [1.5, 5.5, 8.5]
    assert pooled[1, :2, 0].tolist() == [1.5, 5.0]  # last group: mean of frames 4..6 only
    c = torch.arange(6.0).view(1, 1, 6)
    o = torch.tensor([[[10.0, 20.0]]])
    assert split_and_append(c, o, 3).tolist() == [[[0.0, 1.0, 2.0, 10.0, 3.0, 4.0, 5.0, 20.0]]]


def test_masked_ecapa_batch_equals_single():
    torch.manual_seed(0)
    e = MaskedECAPA(8, lin_neurons=6, channels=(8, 8, 8, 8, 24), attention_channels=4,
                    res2net_scale=4, se_channels=4).eval()
    x, lens = torch.randn(3, 30, 8), torch.tensor([30, 17, 5])
    with torch.no_grad():
        frames, emb = e(x, lens)
        for b in range(3):
            f1, e1 = e(x[b : b + 1, : lens[b]], lens[b : b + 1])
            torch.testing.assert_close(e1[0], emb[b], atol=1e-5, rtol=1e-5)
            for a, c in zip(f1, frames):
                torch.testing.assert_close(a[0], c[b, : lens[b]], atol=1e-5, rtol=1e-5)


def test_fast_conv_paths_equal_torch_convs():
    """The CPU matmul form of the dilated conv and the window-sum form of JOOCI's depthwise conv
    compute exactly what the nn.Conv1d modules (whose weights they use) compute."""
    from upstream.nn.other_encoder import OtherEncoderBlock
    from upstream.nn.res2net import conv1d_same
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, 3, dilation=4, padding=4)
    x = torch.randn(2, 6, 13)
    torch.testing.assert_close(conv1d_same(conv, x), conv(x), atol=1e-5, rtol=1e-5)
    blk = OtherEncoderBlock(8, factor=3, scale=4).eval()
    s = torch.randn(2, 8, 5 * 4)
    torch.testing.assert_close(blk.depthwise_conv(s), blk.depthwise(s), atol=1e-6, rtol=1e-5)


def _bn_with_stats(c=4, seed=0):
    torch.manual_seed(seed)
    bn = MaskedBatchNorm1d(c)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return bn


def _state(bn):
    return {k: v.clone() for k, v in bn.state_dict().items()}


@pytest.mark.parametrize("shape, mask", [
    ((1, 4, 1), None),                                                  # one frame, no mask
    ((1, 4), None),                                                     # one pooled vector
    ((2, 4, 3), torch.tensor([[True, False, False], [False, False, False]])),  # one valid frame
    ((1, 4, 2), torch.tensor([[False, False]])),                        # no valid frame
])
def test_masked_batchnorm_single_value_uses_running_stats(shape, mask):
    """Training on at most one value per channel (nn.BatchNorm1d: "Expected more than 1 value per
    channel") normalises with the running statistics, like eval, and leaves them unchanged."""
    bn = _bn_with_stats()
    before = _state(bn)
    x = torch.randn(*shape, requires_grad=True)
    y = bn.train()(x, mask)
    after = _state(bn)
    for k in before:
        assert torch.equal(before[k], after[k]), k
    expect = bn.eval()(x.detach(), mask)
    torch.testing.assert_close(y.detach(), expect)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()  # gradients reach the affine parameters
    valid = mask is None or bool(mask.any())
    assert (bn.weight.grad.abs().sum() > 0) == valid


def test_masked_batchnorm_two_values_still_train():
    """Two valid values per channel: batch statistics and a running-stat update, as nn.BatchNorm1d
    does on the valid frames alone."""
    bn, ref = _bn_with_stats(), torch.nn.BatchNorm1d(4)
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, False, False], [True, False, False]])
    y = bn.train()(x, mask)
    y_ref = ref.train()(x[:, :, :1])
    torch.testing.assert_close(y[:, :, :1], y_ref)
    assert torch.all(y[:, :, 1:] == 0)
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, k), getattr(ref, k))
    assert int(bn.num_batches_tracked) == 1


def test_use_masked_batchnorm_keeps_names_and_state():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                              torch.nn.Sequential(torch.nn.BatchNorm1d(4, momentum=0.3)))
    net[1].running_mean.normal_()
    before = _state(net)
    assert use_masked_batchnorm(net) == 2
    assert type(net[1]) is MaskedBatchNorm1d and type(net[2][0]) is MaskedBatchNorm1d
    assert net[2][0].momentum == 0.3
    after = _state(net)
    assert list(before) == list(after) and all(torch.equal(before[k], after[k]) for k in before)
    net.train()(torch.randn(1, 3))  # a batch of one: no "Expected more than 1 value per channel"


def test_masked_ecapa_trains_on_one_frame():
    torch.manual_seed(0)
    e = MaskedECAPA(8, lin_neurons=6, channels=(8, 8, 8, 8, 24), attention_channels=4,
                    res2net_scale=4, se_channels=4).train()
    frames, emb = e(torch.randn(1, 1, 8), torch.tensor([1]))
    assert emb.shape == (1, 6) and torch.isfinite(emb).all()
    emb.sum().backward()
