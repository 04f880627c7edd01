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

Speed comes from: the frame-distance matrix of each context computed once (contexts of similar
size padded to one width and multiplied in one batched matmul); the DTW of every distinct
(row item, column item) pair done once, in length-bucketed batches swept along anti-diagonals read
as strided views; all cells scored with tensor ops; and the plan (sampling, distinct pairs, each
cell's positions among them) built once and shared by every layer scored with it.

Example::

    table = read_item_file("abx/dev.item")
    feats, kept = slice_items(table, lambda f: store.get("content", 6, f), rate=50.0)   # ItemFeatures
    t = table.subset(kept)
    plan = build_plan(t.phone, t.context, t.speaker)     # reuse it for every layer
    scores = abx_scores(feats, plan)                     # ABXScores(within=..., across=...) in %
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import math
import operator
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from analysis.checks import (FIX_FEATURES, AnalysisInputError, NonFiniteFeaturesError, SegmentOutsideFileError,
                             end_limit)

SLICINGS = ("librilight", "fastabx")


class ItemFileError(AnalysisInputError):
    """A malformed item file; the message names the file and line."""


class MissingFeaturesError(KeyError):
    """Features are missing for files the item file names."""

    def __str__(self):
        return str(self.args[0])


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic GC: building ~10^5 small lists triggers full collections that cost
    more than the work itself (nothing built here has reference cycles)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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
    negative time, offset <= onset, bytes that are not UTF-8 text, or a file name that leaves the
    audio directory (absolute, ``~`` or ``..``: item files name files relative to it).
    """
    path = Path(path)
    if not path.is_file():
        raise ItemFileError(f"item file {path} does not exist")
    with _gc_paused():
        try:
            return _read_item_file(path)
        except UnicodeDecodeError:
            raise _not_text(path) from None


def _not_text(path: Path) -> ItemFileError:
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return ItemFileError(f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start} of the line); "
                                     f"an item file is text, one item per line: is this the right file?")
    return ItemFileError(f"{path}: not UTF-8 text")


def _leaves_root(name: str) -> bool:
    """True for a file id that is not a plain relative path below the audio directory."""
    return name[0] in "/\\~" or (".." in name and ".." in name.replace("\\", "/").split("/"))


def _read_item_file(path: Path) -> ItemTable:
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
            if _leaves_root(cols[0]):
                raise ItemFileError(f"{path}:{n}: file {cols[0]!r} leaves the audio directory (an absolute path, "
                                    f"'~' or '..'); item files name files relative to it, e.g. 84-121123-0000: "
                                    f"fix the line or pass the right --audio-dir")
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


class ItemFeatures(Sequence):
    """Every item's (T_i, D) frames packed into one tensor: item i is ``frames[offsets[i]:offsets[i] + lengths[i]]``.

    What :func:`slice_items` returns and :func:`abx_scores` consumes (a list of per-item tensors is
    accepted too and packed). Indexing gives item i's frames as a view.
    """

    def __init__(self, frames: torch.Tensor, lengths: torch.Tensor):
        self.frames = frames
        self.lengths = lengths.to(torch.long)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths

    @classmethod
    def pack(cls, feats: "Sequence[torch.Tensor] | ItemFeatures") -> "ItemFeatures":
        if isinstance(feats, ItemFeatures):
            return feats
        lens = torch.tensor([int(f.shape[0]) for f in feats], dtype=torch.long)
        frames = torch.cat([torch.as_tensor(f).float() for f in feats], 0) if len(feats) else torch.zeros(0, 1)
        return cls(frames, lens)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):
        i = operator.index(i)                 # ints and numpy integers; a slice or a float is a TypeError
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return self.frames[o:o + n]

    @property
    def dim(self) -> int:
        return int(self.frames.shape[1])


def _concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)]) without the loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


def slice_items(table: ItemTable, get_frames: Callable[[str], np.ndarray], rate: float,
                slicing: str = "librilight", file_order: Sequence[str] | None = None,
                ) -> tuple[ItemFeatures, np.ndarray]:
    """Cut every item's frames out of its file's (T, D) features.

    Returns (the kept items' frames as :class:`ItemFeatures`, indices of the kept items into
    ``table``) ordered file by file (``file_order``, default first appearance in the item file),
    items in item-file order within a file — the order Libri-light's loader uses. Items with an
    empty slice are dropped. Files the table names that ``get_frames`` cannot provide (it raises
    KeyError or FileNotFoundError) are reported together in one :class:`MissingFeaturesError`.
    Items that end past their file's last frame (more than :func:`analysis.checks.end_limit`
    allows) raise :class:`SegmentOutsideFileError`, and NaN/Inf in an item's frames
    :class:`NonFiniteFeaturesError`, each with the item file's line numbers.
    """
    by_file: dict[str, list[int]] = {}
    for i, f in enumerate(table.file):
        by_file.setdefault(f, []).append(i)
    order = list(by_file) if file_order is None else [f for f in file_order if f in by_file]
    if file_order is not None:
        in_order = set(order)
        extra = [f for f in by_file if f not in in_order]
        if extra:
            raise MissingFeaturesError(f"{len(extra)} file(s) of {table.path} are not in file_order: {extra[:10]}")
    arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []     # (features, item starts, item lengths)
    kept: list[np.ndarray] = []
    missing: list[str] = []
    outside: list[str] = []
    dim = None
    for f in order:
        try:
            x = np.asarray(get_frames(f))
        except (KeyError, FileNotFoundError):
            missing.append(f)
            continue
        if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
            raise ValueError(f"features of file {f!r} have shape {tuple(x.shape)}; every file needs (frames, "
                             f"{dim if dim is not None else 'dim'}) — re-extract them with one upstream and layer")
        dim = x.shape[1]
        idx = np.asarray(by_file[f])
        limit = end_limit(x.shape[0], rate)
        for i in idx[table.offset[idx] > limit]:
            outside.append(f"{table.path}:{table.line[i]}: {f} {table.onset[i]:g}-{table.offset[i]:g} s "
                           f"(its features end at {x.shape[0] / rate:.2f} s)")
        s, e = frame_ranges(table.onset[idx], table.offset[idx], rate, x.shape[0], slicing)
        ok = (s < x.shape[0]) & (e > s)
        kept.append(idx[ok])
        arrays.append((x, s[ok], e[ok] - s[ok]))
    if missing:
        raise MissingFeaturesError(f"no features for {len(missing)} file(s) named in {table.path}: "
                                   f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                                   "(extract features for these files, or use an item file that matches the audio)")
    if outside:
        raise SegmentOutsideFileError(
            f"{len(outside)} item(s) end past the end of their file: {'; '.join(outside[:10])}"
            f"{' ...' if len(outside) > 10 else ''}. The item file does not match the audio (another "
            f"file's items, or times not in seconds): fix or remove these lines")
    if not arrays:
        return ItemFeatures(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)), np.zeros(0, dtype=np.int64)
    lens_np = np.concatenate([n for _, _, n in arrays]).astype(np.int64)
    frames = np.empty((int(lens_np.sum()), dim), dtype=np.float32)      # our copy (store views are read-only)
    pos = 0
    for x, s, n in arrays:
        rows = _concat_ranges(s.astype(np.int64), n.astype(np.int64))
        if x.dtype == np.float32 and x.flags.c_contiguous:
            np.take(x, rows, axis=0, out=frames[pos:pos + len(rows)])
        else:
            frames[pos:pos + len(rows)] = x[rows]
        pos += len(rows)
    kept_idx = np.concatenate(kept).astype(np.int64)
    if not np.isfinite(frames).all():
        raise _nonfinite_items(table, frames, lens_np, kept_idx)
    return ItemFeatures(torch.from_numpy(frames), torch.from_numpy(lens_np)), kept_idx


def _nonfinite_items(table: ItemTable, frames: np.ndarray, lens: np.ndarray, kept: np.ndarray) -> NonFiniteFeaturesError:
    """The error naming the files and item-file lines whose frames hold NaN/Inf."""
    bad_rows = ~np.isfinite(frames).all(1)
    bad_items = np.unique(np.repeat(np.arange(len(lens)), lens)[bad_rows])
    items = kept[bad_items]
    files = list(dict.fromkeys(table.file[i] for i in items))
    where = "; ".join(f"{table.file[i]} ({table.path}:{table.line[i]})" for i in items[:10])
    return NonFiniteFeaturesError(
        f"features of {len(files)} file(s) hold NaN/Inf in the frames of {len(items)} item(s): {where}"
        f"{' ...' if len(items) > 10 else ''}; an ABX score over them would be wrong: {FIX_FEATURES}")


# ----------------------------------------------------------------------------------------------
# the plan: cells and DTW pairs (depends only on the items, so it is shared by all layers)

@dataclass
class ABXConfig:
    max_size_group: int = 10
    max_x_across: int = 5
    seed: int = 3459                 # Libri-light's default seed
    device: str | None = None        # None: cuda when available
    chunk_elements: int = 4_000_000  # size of one batched DTW / scoring chunk (elements)
    # speaker-bootstrap resamples for ABXScores.within_ci/across_ci (0: no interval). Off by default so
    # that timing benches measure the metric alone; harness abx asks for 1000 (~20 ms per condition on
    # the small corpus' plan, B x speakers x phone pairs)
    n_bootstrap: int = 0
    ci_level: float = 0.95


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
    _pairs: object = field(default=None, repr=False, compare=False)   # _PairIndex, built on first use


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
    with _gc_paused():
        return _build_plan(phone, context, speaker, config)


def _build_plan(phone, context, speaker, config: ABXConfig) -> ABXPlan:
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


# ----------------------------------------------------------------------------------------------
# distances and DTW

def normalize_frames(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Libri-light's ``normalize_with_singularity`` on (T, D): unit rows plus one extra dimension
    (1e-12; a zero row becomes constant with -2e12 there, i.e. at distance 1 from everything).

    Without zero rows the extra dimension only adds 1e-24 to every dot product, which float32
    cannot represent next to a cosine, so it is left out (same distances, one column less).
    ``inplace``: divide ``x`` itself when it can (a buffer the caller owns).
    """
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    zero = norm == 0
    if not bool(zero.any()):
        return x.div_(norm) if inplace else x / norm
    y = torch.empty((x.shape[0], x.shape[1] + 1), dtype=x.dtype, device=x.device)
    torch.div(x, norm, out=y[:, :-1])
    y[:, -1:] = 1e-12
    z = zero.view(-1)
    y[z, :-1] = 1 / math.sqrt(x.shape[1])
    y[z, -1] = -2e12
    return y


def dtw_batch(dist: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Path-length-normalised DTW cost of P distance matrices (P, N, M) with sizes n, m (P,).

    Moves: (i-1, j-1), (i, j-1), (i-1, j); ties prefer diagonal, then left, then up (Libri-light's
    back-tracking rule, applied in the forward pass, which gives the same path). Cells beyond
    (n, m) are ignored. float32 like Libri-light's Cython code. (Runs :func:`dtw_sweep` on the
    matrices laid out pair-last.)
    """
    return dtw_sweep(dist.permute(1, 2, 0).contiguous(), n, m)


def dtw_sweep(dist: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """:func:`dtw_batch` on distance matrices laid out pair-last: ``dist`` (N, M, P) contiguous.

    The sweep runs over anti-diagonals k = i + j: each step reads anti-diagonal k of ``dist`` as a
    strided view (rows max(0, k-M+1) .. min(k, N-1), each a contiguous run of P values; no copy) and
    does a few element-wise ops on (length of the diagonal, P), whose long inner dimension P
    vectorises. Costs live in three rotating (N+2, P) buffers indexed by row + 1, whose row 0 and
    the row just past each diagonal hold +inf (cells outside the matrix).
    """
    N, M, P = dist.shape
    dev = dist.device
    dist = dist.contiguous()
    if P == 0:
        return torch.empty(0, dtype=dist.dtype, device=dev)
    inf = float("inf")
    cost = [torch.full((N + 2, P), inf, dtype=dist.dtype, device=dev) for _ in range(3)]
    plen = [torch.zeros((N + 2, P), dtype=dist.dtype, device=dev) for _ in range(3)]
    out = torch.empty(P, dtype=dist.dtype, device=dev)
    # which pairs end on which anti-diagonal (their cell (n-1, m-1)), decided once on the host
    kend = (n + m - 2).cpu().numpy()
    srt = np.argsort(kend, kind="stable")
    ks, first = np.unique(kend[srt], return_index=True)
    bounds = np.r_[first, len(srt)]
    finish = {int(k): torch.as_tensor(srt[bounds[q]:bounds[q + 1]], device=dev) for q, k in enumerate(ks)}
    n_row = n.to(dev)
    base = dist.storage_offset()
    best = torch.empty((N, P), dtype=dist.dtype, device=dev)
    pick = torch.empty((N, P), dtype=dist.dtype, device=dev)
    is_left = torch.empty((N, P), dtype=dist.dtype, device=dev)
    is_diag = torch.empty((N, P), dtype=dist.dtype, device=dev)
    cost[1][1] = dist[0, 0]
    plen[1][1] = 1
    for k in range(int(ks[-1]) + 1):
        c2, c1, c0 = cost[(k - 1) % 3], cost[k % 3], cost[(k + 1) % 3]      # diagonals k-2, k-1, k (k=0: cost[1])
        p2, p1, p0 = plen[(k - 1) % 3], plen[k % 3], plen[(k + 1) % 3]
        if k > 0:
            lo, hi = max(0, k - M + 1), min(k, N - 1)
            L = hi - lo + 1
            d_k = dist.as_strided((L, P), ((M - 1) * P, 1), base + (k + lo * (M - 1)) * P)   # dist[i, k - i], i = lo..hi
            up, left, diag = c1[lo:hi + 1], c1[lo + 1:hi + 2], c2[lo:hi + 1]
            b, q, el, ed = best[:L], pick[:L], is_left[:L], is_diag[:L]
            torch.minimum(diag, left, out=b)
            torch.minimum(b, up, out=b)
            # path length of the chosen predecessor: diagonal, else left, else up (Libri-light's order)
            # (as 0/1 float masks and lerp, which returns either end exactly: torch.where and bool
            # masks are several times slower on CPU)
            torch.eq(left, b, out=el)
            torch.lerp(p1[lo:hi + 1], p1[lo + 1:hi + 2], el, out=q)
            torch.eq(diag, b, out=ed)
            torch.lerp(q, p2[lo:hi + 1], ed, out=p0[lo + 1:hi + 2])
            p0[lo + 1:hi + 2] += 1
            torch.add(d_k, b, out=c0[lo + 1:hi + 2])
            c0[hi + 2] = inf          # row hi+1 of diagonal k lies outside (j < 0); rows < lo are never read
        ps = finish.get(k)
        if ps is not None:
            rows = n_row[ps]                             # row n of the buffers is row n-1
            out[ps] = c0[rows, ps] / p0[rows, ps]
    return out


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


def _bucket(w: np.ndarray) -> np.ndarray:
    """Padded block widths: w rounded up to a multiple of max(4, 2^floor(log2 w) / 4) (<= 25 % padding
    per side), so blocks of similar width share one batched matmul."""
    g = np.maximum(4, 2 ** np.floor(np.log2(np.maximum(w, 1))).astype(np.int64) // 4)
    return -(-w // g) * g


def pair_distances(feats: "Sequence[torch.Tensor] | ItemFeatures", rows: torch.Tensor, cols: torch.Tensor,
                   chunk_elements: int = 4_000_000, device: torch.device | str = "cpu",
                   block: Sequence[int] | None = None, gram_elements: int = 8_000_000) -> torch.Tensor:
    """DTW-angular distance d(rows[p], cols[p]) for item pairs (one value per pair).

    ``block``: a group id per item such that every pair lies within one group (the context, for
    within-context ABX). Then the frame-distance matrix of each group is computed once and pairs
    gather their (n, m) sub-blocks from it: groups of similar size are padded to one width and
    multiplied in one batched matmul, in batches of about ``gram_elements`` Gram entries (bounded
    working memory). Without ``block``, each pair's frames are gathered and multiplied separately.
    """
    device = torch.device(device)
    pf = ItemFeatures.pack(feats)
    rows, cols = rows.to(device), cols.to(device)
    out = torch.empty(len(rows), dtype=torch.float32, device=device)
    if len(rows) == 0:
        return out
    lens = pf.lengths.numpy()
    lengths = pf.lengths.to(device)
    if block is None:
        data = normalize_frames(pf.frames.float().to(device))
        offs = pf.offsets.to(device)
        n, m = lengths[rows], lengths[cols]

        def padded(items: torch.Tensor, t: int) -> torch.Tensor:
            idx = offs[items, None] + torch.arange(t, device=device)[None]
            return data[torch.minimum(idx, (offs[items] + lengths[items] - 1)[:, None])]

        for sel in _length_chunks(n, m, lambda t: t * max(t, data.shape[1]), chunk_elements):
            nn_, mm_ = n[sel], m[sel]
            dist = torch.bmm(padded(rows[sel], int(nn_.max())), padded(cols[sel], int(mm_.max())).transpose(1, 2))
            out[sel] = dtw_batch(dist.clamp_(-1, 1).acos_().div_(math.pi), nn_, mm_)   # angular distance
        return out
    blk = np.asarray(block, dtype=np.int64)
    n_items = len(lens)
    # items grouped by block (stable); block b's frames are fb[bframe0[b] : bframe0[b] + width[b]]
    order = np.argsort(blk, kind="stable")
    ob = blk[order]
    first = np.r_[True, ob[1:] != ob[:-1]]
    bstart_item = np.flatnonzero(first)
    bid = np.cumsum(first) - 1                                # block number of each position
    # only items of some pair take frames in their block's Gram matrix (subsampling leaves ~40 % of
    # a corpus' items out of every cell)
    used = np.zeros(n_items, dtype=bool)
    used[rows.cpu().numpy()] = True
    used[cols.cpu().numpy()] = True
    olen = np.where(used, lens, 0)[order]
    fcum = np.r_[0, np.cumsum(olen)]
    bframe0 = fcum[bstart_item]
    width = np.diff(np.r_[bframe0, fcum[-1]])
    loff = np.empty(n_items, dtype=np.int64)
    loff[order] = fcum[:-1] - bframe0[bid]                    # item's frame offset inside its block
    item_blk = np.empty(n_items, dtype=np.int64)
    item_blk[order] = bid
    pair_b = item_blk[rows.cpu().numpy()]
    if (pair_b != item_blk[cols.cpu().numpy()]).any():
        raise ValueError("pair_distances: a pair crosses blocks")
    fidx = _concat_ranges(pf.offsets.numpy()[order], olen)     # packed-frame index of each block-order frame
    frames = pf.frames.to(device)
    wpad = _bucket(width)
    # batches of consecutive blocks with bounded (padded) Gram size
    sq = wpad ** 2
    batches, b0 = [], 0
    while b0 < len(width):
        b1 = b0 + max(1, int(np.searchsorted(np.cumsum(sq[b0:]), gram_elements, side="right")))
        batches.append((b0, min(b1, len(width))))
        b0 = batches[-1][1]
    loff_t = torch.as_tensor(loff, device=device)
    stride_t = torch.as_tensor(wpad[item_blk], device=device)
    pair_order = np.argsort(pair_b, kind="stable")
    pair_cut = np.searchsorted(pair_b[pair_order], [b for b, _ in batches] + [len(width)])
    for q, (b0, b1) in enumerate(batches):
        # the batch's Gram matrices, one (W, W) tile per block, grouped by padded width W
        blocks = np.arange(b0, b1)
        wb = wpad[b0:b1]
        by_w = np.argsort(wb, kind="stable")
        base = np.zeros(len(width), dtype=np.int64)
        flat = torch.empty(int(sq[b0:b1].sum()), dtype=torch.float32, device=device)
        pos = 0
        for w in np.unique(wb[wb > 0]):                       # (width 0: a block none of whose items is used)
            bs = blocks[by_w[wb[by_w] == w]]
            t = fidx[np.minimum(np.arange(w)[None], (width[bs] - 1)[:, None]) + bframe0[bs][:, None]]   # (nb, w)
            x = frames[torch.as_tensor(t, device=device)].float()
            x = normalize_frames(x.view(-1, x.shape[-1]), inplace=True).view(len(bs), w, -1)
            torch.bmm(x, x.transpose(1, 2), out=flat[pos:pos + len(bs) * w * w].view(len(bs), w, w))
            base[bs] = pos + np.arange(len(bs)) * w * w
            pos += len(bs) * w * w
        base_t = torch.as_tensor(base[item_blk], device=device)
        psel = torch.as_tensor(pair_order[pair_cut[q]:pair_cut[q + 1]], device=device)
        r, c = rows[psel], cols[psel]
        n, m = lengths[r], lengths[c]
        for sel in _length_chunks(n, m, lambda t: 3 * t * t, chunk_elements):
            rr, cc, nn_, mm_ = r[sel], c[sel], n[sel], m[sel]
            ti, tj = int(nn_.max()), int(mm_.max())
            i = torch.minimum(torch.arange(ti, device=device)[:, None], (nn_ - 1)[None])        # (ti, P)
            j = torch.minimum(torch.arange(tj, device=device)[:, None], (mm_ - 1)[None])        # (tj, P)
            w = stride_t[rr]
            start_ = base_t[rr] + loff_t[rr] * w + loff_t[cc]
            idx = (start_[None] + i * w[None])[:, None, :] + j[None, :, :]                  # (ti, tj, P): pair-last
            out[psel[sel]] = dtw_sweep(flat[idx].clamp_(-1, 1).acos_().div_(math.pi), nn_, mm_)   # angular distance
    return out


# ----------------------------------------------------------------------------------------------
# scoring

@dataclass
class ABXScores:
    within: float          # % error, within speaker
    across: float          # % error, across speaker
    n_within_cells: int
    n_across_cells: int
    n_items: int = 0
    n_speakers: int = 0    # speakers of the scored items
    # speaker-bootstrap interval (%), (nan, nan) when not asked for; left out of == (nan != nan, and the
    # interval is a function of the per-cell errors that the scores already compare)
    within_ci: tuple[float, float] = field(default=(float("nan"), float("nan")), compare=False)
    across_ci: tuple[float, float] = field(default=(float("nan"), float("nan")), compare=False)

    def rows(self) -> list[dict]:
        """Per-condition results-row fields: metric, value, interval and sample sizes."""
        return [{"metric": f"abx_{c}", "value": v, "ci_lo": ci[0], "ci_hi": ci[1], "n_cells": n,
                 "n_items": self.n_items, "n_speakers": self.n_speakers}
                for c, v, ci, n in (("within", self.within, self.within_ci, self.n_within_cells),
                                    ("across", self.across, self.across_ci, self.n_across_cells))]


@dataclass
class _CellIndex:
    """For one condition: where each (x, a') and (x, b) distance of every cell sits in the list of
    distinct pairs (-1: padding, or x == a' within speaker)."""

    xa: np.ndarray         # (C, mx, ma)
    xb: np.ndarray         # (C, mx, mb)


@dataclass
class _PairIndex:
    rows: np.ndarray       # distinct (row item, col item) pairs whose DTW the cells need
    cols: np.ndarray
    cells: list[_CellIndex]


def _pair_index(plan: ABXPlan) -> _PairIndex:
    """The distinct DTW pairs of a plan and each cell's positions in them (items only: cached on the
    plan and shared by every layer scored with it)."""
    if plan._pairs is not None:
        return plan._pairs
    parts, shapes = [], []
    for cells in (plan.within, plan.across):
        x, a, b = cells.x, cells.a, cells.b
        if cells.symmetric:
            # orientation by position in the sampled group (Libri-light's): d(x_i, x_j) for i < j
            i, j = np.triu_indices(x.shape[1], k=1)
            xa_r, xa_c = x[:, i], x[:, j]
        else:
            xa_r = np.repeat(x[:, :, None], a.shape[1], 2)
            xa_c = np.repeat(a[:, None, :], x.shape[1], 1)
        xb_r = np.repeat(x[:, :, None], b.shape[1], 2)
        xb_c = np.repeat(b[:, None, :], x.shape[1], 1)
        for r, c in ((xa_r, xa_c), (xb_r, xb_c)):
            parts.append((r, c))
            shapes.append(r.shape)
    n = plan.n_items
    keys = [np.where((r >= 0) & (c >= 0), r * n + c, -1).ravel() for r, c in parts]
    flat = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    valid = flat >= 0
    uniq, inv = np.unique(flat[valid], return_inverse=True)
    pos = np.full(len(flat), -1, dtype=np.int64)
    pos[valid] = inv.reshape(-1)
    split = np.split(pos, np.cumsum([k.size for k in keys])[:-1]) if keys else []
    cells_idx = []
    for q, cells in enumerate((plan.within, plan.across)):
        xa, xb = split[2 * q].reshape(shapes[2 * q]), split[2 * q + 1].reshape(shapes[2 * q + 1])
        if cells.symmetric:
            mx = cells.x.shape[1]
            full = np.full((len(xa), mx, mx), -1, dtype=np.int64)
            i, j = np.triu_indices(mx, k=1)
            full[:, i, j] = xa
            full[:, j, i] = xa
            xa = full
        cells_idx.append(_CellIndex(xa, xb))
    plan._pairs = _PairIndex(uniq // max(n, 1), uniq % max(n, 1), cells_idx)
    return plan._pairs


def _cell_errors(idx: _CellIndex, d: torch.Tensor, device, chunk_elements: int) -> torch.Tensor:
    """1 - theta per cell, from the distances ``d`` of the distinct pairs."""
    C = idx.xa.shape[0]
    if C == 0:
        return torch.zeros(0, dtype=torch.float64)
    xa = torch.as_tensor(idx.xa, device=device)
    xb = torch.as_tensor(idx.xb, device=device)
    mx, ma, mb = xa.shape[1], xa.shape[2], xb.shape[2]
    per = max(1, chunk_elements // (mx * ma * mb))
    out = []
    for s in range(0, C, per):
        ia, ib = xa[s:s + per], xb[s:s + per]
        va, vb = ia >= 0, ib >= 0
        # invalid (x, a') -> +inf and invalid (x, b) -> -inf: such triplets are neither < nor ==
        dxa = d[ia.clamp(min=0)].masked_fill_(~va, float("inf"))
        dxb = d[ib.clamp(min=0)].masked_fill_(~vb, -float("inf"))
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
        uniq, inv = np.unique(keys, return_inverse=True)
        inv = inv.reshape(-1)
        return uniq, np.bincount(inv, weights=vals) / np.bincount(inv)

    n_ph = int(max(cells.phone_a.max(), cells.phone_b.max())) + 1
    pair = cells.phone_a.astype(np.int64) * n_ph + cells.phone_b       # (a, b) as one integer key
    spa, by_spk = group_mean(cells.speaker.astype(np.int64) * n_ph * n_ph + pair, e)
    _, by_pair = group_mean(spa % (n_ph * n_ph), by_spk)
    return float(by_pair.mean() * 100)


def _speaker_pair_table(err: np.ndarray, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """(S, P) table of cell errors averaged over contexts (and x speakers) per (speaker of a/b,
    ordered phone pair), and its (S, P) mask of the combinations that have cells."""
    n_ph = int(max(cells.phone_a.max(), cells.phone_b.max())) + 1
    pair = cells.phone_a.astype(np.int64) * n_ph + cells.phone_b
    _, s_inv = np.unique(cells.speaker, return_inverse=True)
    _, p_inv = np.unique(pair, return_inverse=True)
    s_inv, p_inv = s_inv.reshape(-1), p_inv.reshape(-1)
    S, P = int(s_inv.max()) + 1, int(p_inv.max()) + 1
    num = np.bincount(s_inv * P + p_inv, weights=err, minlength=S * P).reshape(S, P)
    cnt = np.bincount(s_inv * P + p_inv, minlength=S * P).reshape(S, P)
    mask = (cnt > 0).astype(np.float64)
    return np.where(cnt > 0, num / np.maximum(cnt, 1), 0.0), mask


def speaker_bootstrap(err, cells: Cells, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile interval (%) of the ABX error under resampling the speakers (of a/b) with
    replacement: each resample recomputes Libri-light's aggregation (speaker means per phone pair,
    then the mean over the pairs present). Pure function of the per-cell errors; (nan, nan) with
    fewer than 2 speakers or no cells.

    Example: ``lo, hi = speaker_bootstrap(cell_errors, plan.within)``.
    """
    e = np.asarray(err, dtype=np.float64).reshape(-1)
    if len(e) == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    table, mask = _speaker_pair_table(e, cells)
    S = len(table)
    if S < 2:
        return float("nan"), float("nan")
    w = np.random.default_rng(seed).multinomial(S, np.full(S, 1.0 / S), size=n_boot).astype(np.float64)
    num, den = w @ (table * mask), w @ mask                      # (B, P)
    ok = den > 0
    by_pair = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
    scores = by_pair.sum(1) / np.maximum(ok.sum(1), 1) * 100
    a = (1 - level) / 2
    lo, hi = np.quantile(scores, [a, 1 - a])
    return float(lo), float(hi)


def abx_scores(feats: "Sequence[torch.Tensor] | ItemFeatures", plan: ABXPlan,
               config: ABXConfig = ABXConfig()) -> ABXScores:
    """Within- and across-speaker ABX error (%) of items' features (same order as the plan)."""
    if len(feats) != plan.n_items:
        raise ValueError(f"{len(feats)} feature arrays for a plan of {plan.n_items} items")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pi = _pair_index(plan)
    rows, cols = torch.as_tensor(pi.rows, device=device), torch.as_tensor(pi.cols, device=device)
    d = pair_distances(feats, rows, cols, config.chunk_elements, device, block=plan.context) \
        if len(rows) else torch.zeros(0, device=device)
    if len(d) == 0:
        d = torch.zeros(1, device=device)                      # every index is -1 then
    ew = _cell_errors(pi.cells[0], d, device, config.chunk_elements)
    ea = _cell_errors(pi.cells[1], d, device, config.chunk_elements)
    spk = np.unique(np.concatenate([plan.within.speaker, plan.across.speaker, plan.across.speaker_x]))
    boot = dict(n_boot=config.n_bootstrap, level=config.ci_level, seed=config.seed)
    return ABXScores(_aggregate(ew, plan.within, True), _aggregate(ea, plan.across, False),
                     len(ew), len(ea), plan.n_items, len(spk),
                     speaker_bootstrap(ew.numpy(), plan.within, **boot),
                     speaker_bootstrap(ea.numpy(), plan.across, **boot))


def abx(feats: Sequence[torch.Tensor], phone, context, speaker, config: ABXConfig = ABXConfig()) -> ABXScores:
    """One-call ABX on items' (T_i, D) features and their integer phone/context/speaker ids."""
    return abx_scores(feats, build_plan(phone, context, speaker, config), config)
