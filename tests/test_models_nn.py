"""Building blocks: CLUB, pooling, GRL, other-encoder pieces, masked ECAPA (fast, CPU)."""
import torch

from upstream.nn.club import CLUBSample
from upstream.nn.ecapa import MaskedECAPA
from upstream.nn.grl import GradientReversal
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
