"""Triphone ABX (Libri-light / ZeroSpeech 2021 protocol), vectorised in torch.

What is computed (the "within-context" condition, i.e. triphone ABX):

* Items come from an item file ``#file onset offset #phone prev-phone next-phone speaker``.
  The context of an item is ``prev+next``. Phone/context/speaker ids are assigned by first
  appearance in the item file (as Libri-light does).
* Frame slicing of [onset, offset] (seconds) at ``rate`` frames/s: ``start = ceil(rate*onset - 0.5)``,
  ``last = floor(rate*offset - 0.5)``. Frame i is centred at (i + 0.5)/rate, so the frames whose centre
  lies in [onset, offset] are start..last inclusive.

  - ``slicing="librilight"`` (default): frames ``start .. last-1`` — Libri-light's code slices
    ``features[start:last]`` and so drops the last frame (the off-by-one; zerospeech-libriabx2 0.9.8
    keeps it). This is what published Libri-light / ZeroSpeech 2021 numbers use.
  - ``slicing="fastabx"``: frames ``start .. last`` inclusive (fastabx's fix).

  Both clip to the file's frames; an item whose slice is empty is dropped (as in Libri-light).
* Distance: angular, ``arccos(<x/|x|, y/|y|>)/pi`` between frames (Libri-light's
  ``normalize_with_singularity``: a zero frame is at maximal distance of everything), aligned with
  DTW whose cost is normalised by the length of the back-tracked path (Libri-light's tie-breaking:
  diagonal, then left, then up).
* Cells. Within speaker: for each (context c, speaker s, phone a, phone b != a) with at least two
  a-tokens, theta = P(d(x, a') < d(x, b)) over x != a' from the a tokens and b from the b tokens
  (ties count 1/2). Across speaker: for (c, s, a, b) and each other speaker t that has phone a in
  context c (at most ``max_x_across`` such speakers, sampled), x from t's a tokens, a' from s's
  a tokens, b from s's b tokens. Groups larger than ``max_size_group`` are subsampled. The error of a
  cell is 1 - theta; the score averages cells over contexts (and x speakers), then speakers, then
  ordered phone pairs — Libri-light's aggregation.
* Sampling reproduces Libri-light's exactly: the same ``random.Random(seed)`` call sequence over the
  same sorted groups, so with the same items in the same order (see ``file_order`` in
  :func:`slice_items`) both implementations score the same triplets.

Speed comes from doing the DTW of every distinct (row item, column item) pair once, in
length-bucketed batches (anti-diagonal wavefront), and scoring all cells with tensor ops.

Example::

    table = read_item_file("abx/dev.item")
    feats, kept = slice_items(table, lambda f: store.get("content", 6, f), rate=50.0)
    plan = build_plan(table.subset(kept))
    scores = abx_scores(feats, plan)         # ABXScores(within=..., across=...) in %
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

SLICINGS = ("librilight", "fastabx")


class ItemFileError(ValueError):
    """A malformed item file; the message names the file and line."""


class MissingFeaturesError(KeyError):
    """Features are missing for files the item file names."""

    def __str__(self):
        return str(self.args[0])


# ----------------------------------------------------------------------------------------------
# item files

@dataclass
class ItemTable:
    """Parsed item file, one entry per item, in file order. ids by first appearance."""

    path: str
    file: list[str]
    onset: np.ndarray
    offset: np.ndarray
    phone: np.ndarray          # int ids
    context: np.ndarray
    speaker: np.ndarray
    line: np.ndarray           # 1-based line numbers in the item file
    phone_names: list[str] = field(default_factory=list)
    context_names: list[str] = field(default_factory=list)
    speaker_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.file)

    def subset(self, idx) -> "ItemTable":
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return ItemTable(self.path, [self.file[i] for i in idx], self.onset[idx], self.offset[idx],
                         self.phone[idx], self.context[idx], self.speaker[idx], self.line[idx],
                         self.phone_names, self.context_names, self.speaker_names)


def read_item_file(path: str | Path) -> ItemTable:
    """Read a Libri-light item file. A first line starting with '#' is the header (skipped).

    Raises :class:`ItemFileError` with ``path:line`` for a wrong column count, a non-numeric or
    negative time, or offset <= onset.
    """
    path = Path(path)
    if not path.is_file():
        raise ItemFileError(f"item file {path} does not exist")
    files, on, off, ph, ctx, spk, lines = [], [], [], [], [], [], []
    ids: tuple[dict, dict, dict] = ({}, {}, {})
    with open(path) as f:
        for n, raw in enumerate(f, start=1):
            s = raw.strip()
            if not s or (n == 1 and s.startswith("#")):
                continue
            cols = s.split()
            if len(cols) != 7:
                raise ItemFileError(f"{path}:{n}: expected 7 columns '#file onset offset #phone prev-phone "
                                    f"next-phone speaker', found {len(cols)}: {s!r}")
            try:
                a, b = float(cols[1]), float(cols[2])
            except ValueError:
                raise ItemFileError(f"{path}:{n}: onset/offset must be numbers (seconds), got "
                                    f"{cols[1]!r} {cols[2]!r}") from None
            if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b <= a:
                raise ItemFileError(f"{path}:{n}: need 0 <= onset < offset, got {a} {b}")
            files.append(cols[0])
            on.append(a)
            off.append(b)
            for d, val, out in ((ids[0], cols[3], ph), (ids[1], cols[4] + "+" + cols[5], ctx), (ids[2], cols[6], spk)):
                out.append(d.setdefault(val, len(d)))
            lines.append(n)
    if not files:
        raise ItemFileError(f"{path}: no items (an item file has a header line and one item per line)")
    return ItemTable(str(path), files, np.array(on), np.array(off), np.array(ph), np.array(ctx), np.array(spk),
                     np.array(lines), list(ids[0]), list(ids[1]), list(ids[2]))


def frame_range(onset: float, offset: float, rate: float, n_frames: int, slicing: str = "librilight") -> tuple[int, int]:
    """[start, end) frame indices of a segment; see the module docstring for the two variants."""
    if slicing not in SLICINGS:
        raise ValueError(f"slicing must be one of {SLICINGS}, got {slicing!r}")
    start = max(0, int(math.ceil(rate * onset - 0.5)))
    last = int(math.floor(rate * offset - 0.5))
    end = min(n_frames, last if slicing == "librilight" else last + 1)
    return start, end


def frame_ranges(onset: np.ndarray, offset: np.ndarray, rate: float, n_frames: int,
                 slicing: str = "librilight") -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`frame_range` (same float arithmetic)."""
    if slicing not in SLICINGS:
        raise ValueError(f"slicing must be one of {SLICINGS}, got {slicing!r}")
    start = np.maximum(0, np.ceil(rate * onset - 0.5)).astype(np.int64)
    last = np.floor(rate * offset - 0.5).astype(np.int64)
    end = np.minimum(n_frames, last if slicing == "librilight" else last + 1)
    return start, end


def slice_items(table: ItemTable, get_frames: Callable[[str], np.ndarray], rate: float,
                slicing: str = "librilight", file_order: Sequence[str] | None = None,
                ) -> tuple[list[torch.Tensor], np.ndarray]:
    """Cut every item's frames out of its file's (T, D) features.

    Returns (features of the kept items, indices of the kept items into ``table``) ordered file by
    file (``file_order``, default first appearance in the item file), items in item-file order
    within a file — the order Libri-light's loader uses. Items with an empty slice are dropped.
    Files the table names that ``get_frames`` cannot provide (it raises KeyError or
    FileNotFoundError) are reported together in one :class:`MissingFeaturesError`.
    """
    by_file: dict[str, list[int]] = {}
    for i, f in enumerate(table.file):
        by_file.setdefault(f, []).append(i)
    order = list(by_file) if file_order is None else [f for f in file_order if f in by_file]
    feats: list[torch.Tensor] = []
    kept: list[int] = []
    missing: list[str] = []
    for f in order:
        try:
            x = get_frames(f)
        except (KeyError, FileNotFoundError):
            missing.append(f)
            continue
        x = torch.from_numpy(np.array(x, dtype=np.float32))          # a copy: store views are read-only
        idx = np.asarray(by_file[f])
        starts, ends = frame_ranges(table.onset[idx], table.offset[idx], rate, x.shape[0], slicing)
        for i, s, e in zip(idx.tolist(), starts.tolist(), ends.tolist()):
            if s >= x.shape[0] or e <= s:
                continue
            feats.append(x[s:e])
            kept.append(i)
    if missing:
        raise MissingFeaturesError(f"no features for {len(missing)} file(s) named in {table.path}: "
                                   f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                                   "(extract features for these files, or use an item file that matches the audio)")
    if file_order is not None:
        extra = [f for f in by_file if f not in set(order)]
        if extra:
            raise MissingFeaturesError(f"{len(extra)} file(s) of {table.path} are not in file_order: {extra[:10]}")
    return feats, np.array(kept, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# the plan: cells and DTW pairs (depends only on the items, so it is shared by all layers)

@dataclass
class ABXConfig:
    max_size_group: int = 10
    max_x_across: int = 5
    seed: int = 3459                 # Libri-light's default seed
    device: str | None = None        # None: cuda when available
    chunk_elements: int = 4_000_000  # size of one batched DTW / scoring chunk (elements)


@dataclass
class Cells:
    """Padded item indices of each cell: x (C, Mx), a (C, Ma), b (C, Mb); -1 = padding."""

    x: np.ndarray
    a: np.ndarray
    b: np.ndarray
    symmetric: bool                  # within: x is the a group itself (x != a')
    speaker: np.ndarray              # (C,) speaker of a/b
    phone_a: np.ndarray
    phone_b: np.ndarray
    context: np.ndarray
    speaker_x: np.ndarray            # (C,) x's speaker (== speaker within)


@dataclass
class ABXPlan:
    n_items: int
    within: Cells
    across: Cells
    context: np.ndarray | None = None     # (n_items,) context id of each item (pairs never cross it)


def _groups(phone: np.ndarray, context: np.ndarray, speaker: np.ndarray):
    """Libri-light's grouping: stable sort by (context, speaker, phone); nested lists of ranges."""
    order = np.lexsort((phone, speaker, context))          # stable: last key is primary
    c, s, p = context[order].tolist(), speaker[order].tolist(), phone[order].tolist()
    out: list[list[list[tuple[int, int]]]] = []
    n = len(order)
    i = 0
    while i < n:
        j = i
        while j < n and (c[j], s[j], p[j]) == (c[i], s[i], p[i]):
            j += 1
        if not out or c[out[-1][-1][-1][0]] != c[i]:
            out.append([[]])
        elif s[out[-1][-1][-1][0]] != s[i]:
            out[-1].append([])
        out[-1][-1].append((i, j))
        i = j
    return order, out


def _pad(rows: list[list[int]]) -> np.ndarray:
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    m = int(lens.max()) if len(rows) else 0
    out = np.full((len(rows), max(m, 1)), -1, dtype=np.int64)
    if len(rows):
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lens.sum()))
        r = np.repeat(np.arange(len(rows)), lens)
        c = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
        out[r, c] = flat
    return out


def build_plan(phone: Sequence[int], context: Sequence[int], speaker: Sequence[int],
               config: ABXConfig = ABXConfig()) -> ABXPlan:
    """Cells of the within- and across-speaker conditions for items given by integer ids.

    Item k of the features passed to :func:`abx_scores` must be item k here. Sampling follows
    Libri-light's ``random`` call sequence (seeded by ``config.seed``) for each condition.
    """
    phone, context, speaker = (np.asarray(v, dtype=np.int64) for v in (phone, context, speaker))
    order, groups = _groups(phone, context, speaker)
    msg = config.max_size_group
    context_np = context
    phone, context, speaker = phone.tolist(), context.tolist(), speaker.tolist()   # fast scalar access

    order_l = order.tolist()

    def take(rng: random.Random, rng_range: tuple[int, int]) -> list[int]:
        i0, i1 = rng_range
        if i1 - i0 > msg:                      # the same call Libri-light makes: sample positions
            return [order_l[q] for q in rng.sample(range(i0, i1), k=msg)]
        return order_l[i0:i1]

    # within speaker
    rng = random.Random(config.seed)
    wx, wb, meta = [], [], []
    for cg in groups:
        for sg in cg:
            if len(sg) == 1:
                continue
            for ia, ga in enumerate(sg):
                if ga[1] - ga[0] == 1:
                    continue
                for ib, gb in enumerate(sg):
                    if ib == ia:
                        continue
                    b = take(rng, gb)
                    a = take(rng, ga)
                    wx.append(a)
                    wb.append(b)
                    k = a[0]
                    meta.append((speaker[k], phone[k], phone[b[0]], context[k], speaker[k]))
    m = np.array(meta, dtype=np.int64).reshape(-1, 5)
    xw = _pad(wx)
    within = Cells(xw, xw, _pad(wb), True, *m.T)

    # across speaker
    rng = random.Random(config.seed)
    by_cp: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
    for cg in groups:
        for sg in cg:
            for g in sg:
                k = order_l[g[0]]
                by_cp.setdefault((context[k], phone[k]), {})[speaker[k]] = g
    ax, aa, ab, meta = [], [], [], []
    for cg in groups:
        for sg in cg:
            if len(sg) == 1:
                continue
            for ia, ga in enumerate(sg):
                k = order_l[ga[0]]
                ref = [g for s, g in by_cp[(context[k], phone[k])].items() if s != speaker[k]]
                if len(ref) > config.max_x_across:
                    ref = rng.sample(ref, k=config.max_x_across)
                for gx in ref:
                    for ib, gb in enumerate(sg):
                        if ib == ia:
                            continue
                        a = take(rng, ga)
                        b = take(rng, gb)
                        x = take(rng, gx)
                        ax.append(x)
                        aa.append(a)
                        ab.append(b)
                        meta.append((speaker[a[0]], phone[a[0]], phone[b[0]], context[a[0]], speaker[x[0]]))
    m = np.array(meta, dtype=np.int64).reshape(-1, 5)
    across = Cells(_pad(ax), _pad(aa), _pad(ab), False, *m.T)
    return ABXPlan(len(phone), within, across, context_np)


def _cell_pairs(cells: Cells) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, col) item pairs whose DTW a cell needs, in Libri-light's orientation: d(x_i, a_j)
    (within: rows/cols ordered by position in the sampled group, i < j), d(x_i, b_k)."""
    x, a, b = cells.x, cells.a, cells.b
    if cells.symmetric:
        mx = x.shape[1]
        i, j = np.triu_indices(mx, k=1)
        xa_r, xa_c = x[:, i], x[:, j]
    else:
        xa_r = np.repeat(x[:, :, None], a.shape[1], 2)
        xa_c = np.repeat(a[:, None, :], x.shape[1], 1)
    xb_r = np.repeat(x[:, :, None], b.shape[1], 2)
    xb_c = np.repeat(b[:, None, :], x.shape[1], 1)
    return xa_r.ravel(), xa_c.ravel(), xb_r.ravel(), xb_c.ravel()


# ----------------------------------------------------------------------------------------------
# distances and DTW

def normalize_frames(x: torch.Tensor) -> torch.Tensor:
    """Libri-light's ``normalize_with_singularity`` on (T, D): unit rows plus one extra dimension
    (1e-12; a zero row becomes constant with -2e12 there, i.e. at distance 1 from everything)."""
    norm = (x * x).sum(1, keepdim=True)
    zero = norm == 0
    y = torch.empty((x.shape[0], x.shape[1] + 1), dtype=x.dtype, device=x.device)
    torch.div(x, norm.sqrt(), out=y[:, :-1])
    y[:, -1:] = 1e-12
    if bool(zero.any()):
        z = zero.view(-1)
        y[z, :-1] = 1 / math.sqrt(x.shape[1])
        y[z, -1] = -2e12
    return y


def dtw_batch(dist: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Path-length-normalised DTW cost of P distance matrices (P, N, M) with sizes n, m (P,).

    Moves: (i-1, j-1), (i, j-1), (i-1, j); ties prefer diagonal, then left, then up (Libri-light's
    back-tracking rule, applied in the forward pass, which gives the same path). Cells beyond
    (n, m) are ignored. float32 like Libri-light's Cython code. The sweep runs over anti-diagonals
    stored contiguously (skewed layout), so every step is a few element-wise ops on (P, N).
    """
    P, N, M = dist.shape
    dev = dist.device
    K = N + M - 1
    skew = torch.full((P, N, K), float("inf"), dtype=dist.dtype, device=dev)
    for i in range(N):                                   # skew[:, i, k] = dist[:, i, k - i]
        skew[:, i, i:i + M] = dist[:, i]
    dk = skew.transpose(1, 2).contiguous()               # (P, K, N): anti-diagonal k, row i
    # three rotating buffers of (P, N+1): column 0 is a permanent +inf (the cell i = -1)
    cost = [torch.full((P, N + 1), float("inf"), dtype=dist.dtype, device=dev) for _ in range(3)]
    plen = [torch.zeros((P, N + 1), dtype=dist.dtype, device=dev) for _ in range(3)]
    cost[1][:, 1:] = dk[:, 0]
    plen[1][:, 1:] = 1
    kend = n + m - 2
    ar = torch.arange(P, device=dev)
    out = torch.empty(P, dtype=dist.dtype, device=dev)
    done = kend == 0
    out[done] = cost[1][done, n[done]] / plen[1][done, n[done]]
    best = torch.empty((P, N), dtype=dist.dtype, device=dev)
    for k in range(1, K):
        c2, c1, c0 = cost[(k - 1) % 3], cost[k % 3], cost[(k + 1) % 3]      # diag k-2, k-1, k
        p2, p1, p0 = plen[(k - 1) % 3], plen[k % 3], plen[(k + 1) % 3]
        up, left, diag = c1[:, :-1], c1[:, 1:], c2[:, :-1]
        torch.minimum(torch.minimum(diag, left, out=best), up, out=best)
        # path length of the chosen predecessor: diagonal, else left, else up (Libri-light's order)
        torch.where(diag == best, p2[:, :-1], torch.where(left == best, p1[:, 1:], p1[:, :-1]), out=p0[:, 1:])
        p0[:, 1:] += 1
        torch.add(dk[:, k], best, out=c0[:, 1:])
        sel = kend == k
        if bool(sel.any()):
            ps, ns = ar[sel], n[sel]
            out[ps] = c0[ps, ns] / p0[ps, ns]
    return out


class _Frames:
    """All item frames concatenated (normalised), with offsets/lengths, on one device."""

    def __init__(self, feats: Sequence[torch.Tensor], device: torch.device):
        lens = [int(f.shape[0]) for f in feats]
        self.lengths = torch.tensor(lens, dtype=torch.long, device=device)
        self.offsets = torch.cumsum(torch.tensor([0] + lens[:-1], dtype=torch.long), 0).to(device)
        self.data = normalize_frames(torch.cat([f.float() for f in feats], 0).to(device))

    def padded(self, items: torch.Tensor, t: int) -> torch.Tensor:
        idx = self.offsets[items, None] + torch.arange(t, device=items.device)[None]
        idx = torch.minimum(idx, (self.offsets[items] + self.lengths[items] - 1)[:, None])
        return self.data[idx]


def _length_chunks(n: torch.Tensor, m: torch.Tensor, per_pair: Callable[[int], int], chunk_elements: int):
    """Pair index chunks sorted by length (longest first), each of similar lengths and bounded size."""
    order = torch.argsort(torch.maximum(n, m) * 4096 + torch.minimum(n, m), descending=True)
    lmax = torch.maximum(n, m)[order].contiguous()
    start = 0
    while start < len(order):
        t_max = int(lmax[start])                 # longest first: a safe bound for the chunk
        size = max(1, chunk_elements // max(1, per_pair(t_max)))
        # keep a chunk's lengths similar (little padding): stop where they fall below 3/4 of its first
        stop = start + int(torch.searchsorted(-lmax[start:start + size], -(t_max * 3) // 4, right=True))
        sel = order[start:max(stop, start + 1)]
        yield sel
        start += len(sel)


def pair_distances(feats: Sequence[torch.Tensor], rows: torch.Tensor, cols: torch.Tensor,
                   chunk_elements: int = 4_000_000, device: torch.device | str = "cpu",
                   block: Sequence[int] | None = None, gram_elements: int = 2_000_000,
                   block_min_dim: int = 0) -> torch.Tensor:
    """DTW-angular distance d(rows[p], cols[p]) for item pairs (one value per pair).

    ``block``: a group id per item such that every pair lies within one group (the context, for
    within-context ABX). Then the frame-distance matrix of each group is computed once with one
    matmul and pairs gather their (n, m) sub-blocks from it; groups are processed in batches of
    ``gram_elements`` Gram entries (frames normalised per batch, so the working memory stays small).
    Without it (or for features narrower than ``block_min_dim``) each pair's frames are gathered and
    multiplied separately.
    """
    device = torch.device(device)
    rows, cols = rows.to(device), cols.to(device)
    out = torch.empty(len(rows), dtype=torch.float32, device=device)
    if len(rows) == 0:
        return out
    if block is None or int(feats[0].shape[1]) < block_min_dim:
        fr = _Frames(feats, device)
        n, m = fr.lengths[rows], fr.lengths[cols]
        dim = fr.data.shape[1]
        for sel in _length_chunks(n, m, lambda t: t * max(t, dim), chunk_elements):
            nn_, mm_ = n[sel], m[sel]
            xr = fr.padded(rows[sel], int(nn_.max()))
            xc = fr.padded(cols[sel], int(mm_.max()))
            dist = torch.bmm(xr, xc.transpose(1, 2)).clamp_(-1, 1).acos_() / math.pi
            out[sel] = dtw_batch(dist, nn_, mm_)
        return out
    blk = np.asarray(block, dtype=np.int64)
    lens = np.array([int(f.shape[0]) for f in feats], dtype=np.int64)
    lengths = torch.as_tensor(lens, device=device)
    n_items = len(lens)
    # items grouped by block (stable), their frames gathered once in that order
    order = np.argsort(blk, kind="stable")
    ob = blk[order]
    first = np.r_[True, ob[1:] != ob[:-1]]
    bstart_item = np.flatnonzero(first)                       # first position (in `order`) of each block
    bid = np.cumsum(first) - 1                                # block number of each position
    olen = lens[order]
    fcum = np.r_[0, np.cumsum(olen)]                          # frame start of each position
    bframe0 = fcum[bstart_item]                               # frame start of each block
    width_b = np.diff(np.r_[bframe0, fcum[-1]])               # frames per block
    loff = np.empty(n_items, dtype=np.int64)
    loff[order] = fcum[:-1] - bframe0[bid]                    # item's frame offset inside its block
    item_blk = np.empty(n_items, dtype=np.int64)
    item_blk[order] = bid
    pair_b = item_blk[rows.cpu().numpy()]
    if (pair_b != item_blk[cols.cpu().numpy()]).any():
        raise ValueError("pair_distances: a pair crosses blocks")
    order_l = order.tolist()
    # batches of blocks with bounded Gram size
    sq = width_b.astype(np.int64) ** 2
    batches, b0 = [], 0
    while b0 < len(width_b):
        b1 = b0 + max(1, int(np.searchsorted(np.cumsum(sq[b0:]), gram_elements, side="right")))
        batches.append((b0, min(b1, len(width_b))))
        b0 = batches[-1][1]
    loff_t = torch.as_tensor(loff, device=device)
    width_t = torch.as_tensor(width_b[item_blk], device=device)
    for b0, b1 in batches:
        gbase = np.r_[0, np.cumsum(sq[b0:b1])]
        # this batch's item frames, normalised (a per-frame op), in block order: working memory
        # stays at the batch's size (small buffers are reused, not page-faulted in afresh)
        p0, p1 = bstart_item[b0], (bstart_item[b1] if b1 < len(bstart_item) else len(order_l))
        fb = normalize_frames(torch.cat([feats[i].float() for i in order_l[p0:p1]], 0).to(device))
        f0 = bframe0[b0]
        flat = torch.empty(int(gbase[-1]), dtype=fb.dtype, device=device)
        for b in range(b0, b1):
            f = fb[bframe0[b] - f0:bframe0[b] - f0 + width_b[b]]
            torch.mm(f, f.T, out=flat[gbase[b - b0]:gbase[b - b0 + 1]].view(width_b[b], width_b[b]))
        flat.clamp_(-1, 1).acos_().div_(math.pi)
        base_blk = np.zeros(len(width_b), dtype=np.int64)
        base_blk[b0:b1] = gbase[:-1]
        base_t = torch.as_tensor(base_blk[item_blk], device=device)
        psel = torch.as_tensor(np.flatnonzero((pair_b >= b0) & (pair_b < b1)), device=device)
        r, c = rows[psel], cols[psel]
        n, m = lengths[r], lengths[c]
        for sel in _length_chunks(n, m, lambda t: 3 * t * t, chunk_elements):
            rr, cc, nn_, mm_ = r[sel], c[sel], n[sel], m[sel]
            ti, tj = int(nn_.max()), int(mm_.max())
            i = torch.minimum(torch.arange(ti, device=device)[None], (nn_ - 1)[:, None])        # (P, ti)
            j = torch.minimum(torch.arange(tj, device=device)[None], (mm_ - 1)[:, None])        # (P, tj)
            w = width_t[rr]
            start_ = base_t[rr] + loff_t[rr] * w + loff_t[cc]
            idx = (start_[:, None] + i * w[:, None])[:, :, None] + j[:, None, :]
            out[psel[sel]] = dtw_batch(flat[idx], nn_, mm_)
    return out


# ----------------------------------------------------------------------------------------------
# scoring

@dataclass
class ABXScores:
    within: float          # % error, within speaker
    across: float          # % error, across speaker
    n_within_cells: int
    n_across_cells: int


def _cell_errors(cells: Cells, dist_lookup, device, chunk_elements: int) -> torch.Tensor:
    """1 - theta per cell."""
    C = len(cells.speaker)
    if C == 0:
        return torch.zeros(0, dtype=torch.float64)
    x = torch.as_tensor(cells.x, device=device)
    a = torch.as_tensor(cells.a, device=device)
    b = torch.as_tensor(cells.b, device=device)
    mx, ma, mb = x.shape[1], a.shape[1], b.shape[1]
    per = max(1, chunk_elements // (mx * ma * mb))
    out = []
    for s in range(0, C, per):
        xs, as_, bs = x[s:s + per], a[s:s + per], b[s:s + per]
        if cells.symmetric:
            # orientation is by position in the group, not by item index
            pos_i = torch.arange(mx, device=device)[:, None].expand(mx, ma)
            pos_j = torch.arange(ma, device=device)[None, :].expand(mx, ma)
            lo = torch.where(pos_i < pos_j, xs[:, :, None].expand(-1, mx, ma), as_[:, None, :].expand(-1, mx, ma))
            hi = torch.where(pos_i < pos_j, as_[:, None, :].expand(-1, mx, ma), xs[:, :, None].expand(-1, mx, ma))
            r, c = lo, hi
            va = (xs[:, :, None] >= 0) & (as_[:, None, :] >= 0) & (pos_i != pos_j)[None]
        else:
            r = xs[:, :, None].expand(-1, mx, ma)
            c = as_[:, None, :].expand(-1, mx, ma)
            va = (xs[:, :, None] >= 0) & (as_[:, None, :] >= 0)
        vb = (xs[:, :, None] >= 0) & (bs[:, None, :] >= 0)
        # invalid (x, a') -> +inf and invalid (x, b) -> -inf: such triplets are neither < nor ==
        dxa = dist_lookup(r, c).masked_fill(~va, float("inf"))
        dxb = dist_lookup(xs[:, :, None].expand(-1, mx, mb), bs[:, None, :].expand(-1, mx, mb)).masked_fill(~vb, -float("inf"))
        # lt + eq/2 = (sum of sign(dxb - dxa) + number of triplets) / 2: sign is +1 where d(x,a') <
        # d(x,b), 0 on a tie, -1 otherwise and for every invalid triplet (inf - ... or ... - -inf);
        # two distinct finite floats never subtract to 0, and the sums are small integers (exact).
        sgn = torch.sub(dxb[:, :, None, :], dxa[:, :, :, None]).sign_().sum((1, 2, 3)).double()
        lt_eq = 0.5 * (sgn + mx * ma * mb)
        nvalid = (va.sum(2) * vb.sum(2)).sum(1).double()
        out.append(1 - lt_eq / nvalid)
    return torch.cat(out).cpu()


def _aggregate(err: torch.Tensor, cells: Cells, symmetric: bool) -> float:
    """Libri-light: mean over contexts (and x speakers), then speakers, then (a, b) phone pairs."""
    if len(err) == 0:
        return float("nan")
    e = err.numpy().astype(np.float64)

    def group_mean(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        return uniq, np.bincount(inv, weights=vals) / np.bincount(inv)

    spa, by_spk = group_mean(np.stack([cells.speaker, cells.phone_a, cells.phone_b], 1), e)
    _, by_pair = group_mean(spa[:, 1:], by_spk)
    return float(by_pair.mean() * 100)


def abx_scores(feats: Sequence[torch.Tensor], plan: ABXPlan, config: ABXConfig = ABXConfig()) -> ABXScores:
    """Within- and across-speaker ABX error (%) of items' features (same order as the plan)."""
    if len(feats) != plan.n_items:
        raise ValueError(f"{len(feats)} feature arrays for a plan of {plan.n_items} items")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows, cols = [], []
    for cells in (plan.within, plan.across):
        if len(cells.speaker):
            for r, c in zip(*[iter(_cell_pairs(cells))] * 2):
                ok = (r >= 0) & (c >= 0)
                rows.append(r[ok])
                cols.append(c[ok])
    n = plan.n_items
    keys = np.unique(np.concatenate(rows) * n + np.concatenate(cols)) if rows else np.zeros(0, np.int64)
    keys_t = torch.as_tensor(keys, device=device)
    d = pair_distances(feats, keys_t // n, keys_t % n, config.chunk_elements, device, block=plan.context) \
        if len(keys) else keys_t.float()

    def lookup(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        k = r.clamp(min=0) * n + c.clamp(min=0)
        pos = torch.searchsorted(keys_t, k.reshape(-1)).clamp(max=max(len(keys) - 1, 0))
        return d[pos].reshape(k.shape)

    ew = _cell_errors(plan.within, lookup, device, config.chunk_elements)
    ea = _cell_errors(plan.across, lookup, device, config.chunk_elements)
    return ABXScores(_aggregate(ew, plan.within, True), _aggregate(ea, plan.across, False),
                     len(ew), len(ea))


def abx(feats: Sequence[torch.Tensor], phone, context, speaker, config: ABXConfig = ABXConfig()) -> ABXScores:
    """One-call ABX on items' (T_i, D) features and their integer phone/context/speaker ids."""
    return abx_scores(feats, build_plan(phone, context, speaker, config), config)
