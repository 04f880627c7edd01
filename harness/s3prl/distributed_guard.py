"""Refuse ``torchrun run_downstream.py`` when it would run N independent copies into one folder.

s3prl 0.4.18's ``run_downstream.py`` goes distributed only when ``--local_rank N`` is on its command
line (it then calls ``init_process_group`` and wraps the downstream in DDP). ``torchrun`` passes the
rank in the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) and gives every process the same
argv, so under ``torchrun --nproc_per_node N`` s3prl never initialises a process group: N
processes train the same downstream, each on the full data, all writing checkpoints and logs into
one experiment folder. :func:`refusal` detects that before anything is loaded.

    >>> refusal(["-m", "train", "-d", "voxceleb1"], {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}) is not None
    True
    >>> refusal(["-m", "train"], {}) is None
    True
"""
from __future__ import annotations

import shlex
from typing import Mapping, Sequence

PROG = "run_downstream.py"


def _local_rank_arg(argv: Sequence[str]) -> str | None:
    """The value of s3prl's ``--local_rank`` on argv (``--local_rank N`` or ``--local_rank=N``)."""
    for i, a in enumerate(argv):
        if a == "--local_rank":
            return argv[i + 1] if i + 1 < len(argv) else ""
        if a.startswith("--local_rank="):
            return a.split("=", 1)[1]
    return None


def refusal(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """None when ``argv`` may run as is; else the message to print (exit 2).

    Refused: a launcher says ``WORLD_SIZE`` > 1 but argv has no ``--local_rank`` (N silent copies),
    or ``--local_rank`` disagrees with the launcher's ``LOCAL_RANK`` (every process would claim the
    same GPU).
    """
    try:
        world = int(environ.get("WORLD_SIZE", "1") or "1")
    except ValueError:
        return f"{PROG}: error: WORLD_SIZE={environ.get('WORLD_SIZE')!r} in the environment is not an integer"
    if world <= 1:
        return None
    given = _local_rank_arg(argv)
    env_rank = environ.get("LOCAL_RANK")
    single = shlex.join(["python", PROG, *argv])
    if given is None:
        return (
            f"{PROG}: error: started by a distributed launcher (WORLD_SIZE={world}) without s3prl's --local_rank.\n"
            f"  s3prl 0.4.18 goes distributed only when --local_rank is on its command line; torchrun passes the\n"
            f"  rank in the environment and the same arguments to every process, so these {world} processes would\n"
            f"  each train the same downstream on all the data and write into one experiment folder.\n"
            f"  Run one process per downstream instead (SUPERB trains each downstream on one GPU):\n"
            f"    CUDA_VISIBLE_DEVICES=0 {single}\n"
            f"  and use the other GPUs for other runs (e.g. one `harness run` per GPU: docs/gpu.md).")
    if env_rank is not None and given != env_rank:
        return (f"{PROG}: error: --local_rank {given} but this process is LOCAL_RANK={env_rank} of {world}: torchrun "
                f"gives every process the same arguments, so all would use GPU {given}. Run one process: {single}")
    return None
