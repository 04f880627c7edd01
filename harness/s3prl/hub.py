"""DUET's names on s3prl's hub, ready to use: the compat shims installed, the upstream factories of
:mod:`upstream.hub` registered, and the Featurizer guard on.

    >>> import s3prl.hub
    >>> from harness.s3prl.hub import register
    >>> register(s3prl.hub)                                  # doctest: +SKIP
    ['learn2diss', 'jooci', 'barlow_twins', 'hubert_compact']
"""
from __future__ import annotations

from types import ModuleType


def register(hub_module: ModuleType | None = None) -> list[str]:
    """Everything s3prl needs to run DUET's upstreams (idempotent); returns the names registered."""
    from harness.s3prl import compat
    from harness.s3prl.featurizer_guard import install_featurizer_guard
    from upstream import hub as duet_hub

    compat.install()
    if hub_module is None:
        import s3prl.hub as hub_module
    names = duet_hub.register(hub_module)
    install_featurizer_guard()
    return names
