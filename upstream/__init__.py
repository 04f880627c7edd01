"""DUET upstream models, checkpoints and s3prl experts.

    >>> from upstream import load          # the researcher's API, see upstream/api.py
"""


def __getattr__(name: str):
    # lazy, so `import upstream.facts` (used everywhere, also by `harness --help`) does not import torch
    if name in ("load", "DuetModel", "Streams"):
        from upstream import api

        return getattr(api, name)
    raise AttributeError(f"module 'upstream' has no attribute {name!r}")
