"""Cells whose checkpoint has changed since they ran.

A results file outlives its checkpoints: re-bundle `checkpoints/jooci-compact`, run `harness run
--name X` again, and X.csv holds the new model's cells beside the old one's (a cell is keyed by the
checkpoint's hash, so nothing is overwritten). This module compares the hash each row recorded with
the hash of the files now at the row's recorded path (`ckpt`), with the same function `harness run`
used (:func:`harness.superb.sweep.ckpt_hash_of`):

- ``current``: same hash: the row describes the checkpoint that is there now;
- ``changed``: different hash: the row is of weights that no longer lie at that path (stale);
- ``missing``: nothing at the recorded path (the results were made in another checkout, or the
  checkpoint was deleted): it cannot be told, so such rows are never dropped;
- ``unreadable``: a corrupt or half-copied checkpoint: cannot be told either (the message says why).

`harness run` prints which stale cells its results file still holds; `harness report` lists them
under the provenance and, with ``--current-checkpoints``, leaves them out (saying how many and of
which hashes). Rows without a checkpoint (fbank, MFCC: hash "-") are always current.

    >>> from harness.superb.stale import checkpoint_states, drop_changed
    >>> states = checkpoint_states(df)            # one CheckpointState per (upstream, ckpt, hash)
    >>> kept, dropped = drop_changed(df, states)  # dropped: the states whose rows were removed
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NO_CHECKPOINT = ("-", "nan", "", "None")   # what a row without a checkpoint (fbank, MFCC) holds as its hash


@dataclass(frozen=True)
class CheckpointState:
    upstream: str
    ckpt: str                   # the path the rows recorded
    recorded: str               # the hash the rows recorded
    now: str | None             # the hash of what is at ``ckpt`` now (None: missing or unreadable)
    status: str                 # "current", "changed", "missing" or "unreadable"
    n_cells: int
    why: str = ""               # for "unreadable": the checkpoint loader's message

    def describe(self) -> str:
        what = {"current": "current",
                "changed": f"stale: the files at that path now hash to {self.now}",
                "missing": "cannot be checked: nothing at that path here",
                "unreadable": f"cannot be checked: {self.why}"}[self.status]
        return f"`{self.upstream}` sha {self.recorded} at `{self.ckpt}`: {self.n_cells} cell(s), {what}"


def has_checkpoint(hash_: object) -> bool:
    """Whether a row's recorded ``ckpt_hash`` names a checkpoint (fbank's "-", a blank or NaN do not)."""
    return str(hash_) not in NO_CHECKPOINT


def checkpoint_states(df) -> list[CheckpointState]:
    """One state per (upstream, recorded path, recorded hash) among the rows that have a checkpoint,
    in the order the rows first name them. Each path is hashed once."""
    from harness.superb.sweep import ckpt_hash_of

    if df is None or not len(df) or not {"ckpt_hash", "ckpt", "upstream"} <= set(df.columns):
        return []
    now: dict[tuple[str, str], tuple[str | None, str, str]] = {}
    out = []
    keyed = df[df["ckpt_hash"].map(has_checkpoint)]
    for (up, ck, h), sub in keyed.groupby(["upstream", keyed["ckpt"].astype(str), keyed["ckpt_hash"].astype(str)],
                                          sort=False):
        if (up, ck) not in now:
            if ck in NO_CHECKPOINT or not Path(ck).exists():
                now[(up, ck)] = (None, "missing", "")
            else:
                try:
                    now[(up, ck)] = (ckpt_hash_of(up, ck), "", "")
                except (OSError, ValueError) as e:        # SweepError is a ValueError
                    now[(up, ck)] = (None, "unreadable", str(e))
        cur, status, why = now[(up, ck)]
        if not status:
            status = "current" if cur == h else "changed"
        out.append(CheckpointState(up, ck, h, cur, status, len(sub), why))
    return out


def stale_mask(df, states: list[CheckpointState]):
    """A boolean Series over ``df``: the rows of a ``changed`` checkpoint."""
    import pandas as pd

    bad = {(s.upstream, s.ckpt, s.recorded) for s in states if s.status == "changed"}
    if not bad or not len(df):
        return pd.Series(False, index=df.index)
    keys = zip(df["upstream"].astype(str), df["ckpt"].astype(str), df["ckpt_hash"].astype(str))
    return pd.Series([k in bad for k in keys], index=df.index)


def drop_changed(df, states: list[CheckpointState]):
    """``df`` without the rows of ``changed`` checkpoints, and the states that were dropped."""
    mask = stale_mask(df, states)
    return df[~mask].reset_index(drop=True), [s for s in states if s.status == "changed"]
