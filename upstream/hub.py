"""DUET's upstreams on s3prl's hub: an explicit name -> factory dict and ``register``.

    >>> import harness.s3prl.compat; harness.s3prl.compat.install()     # doctest: +SKIP
    >>> import s3prl.hub, upstream.hub
    >>> upstream.hub.register(s3prl.hub)                    # doctest: +SKIP
    ['learn2diss', 'jooci', 'barlow_twins', 'hubert_compact']

After that ``run_downstream.py -u jooci`` and ``s3prl.nn.S3PRLUpstream("jooci")`` find them.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable

from upstream.barlow_twins.hubconf import barlow_twins
from upstream.hubert_compact.hubconf import hubert_compact
from upstream.jooci.hubconf import jooci
from upstream.learn2diss.hubconf import learn2diss

UPSTREAMS: dict[str, Callable] = {
    "learn2diss": learn2diss,
    "jooci": jooci,
    "barlow_twins": barlow_twins,
    "hubert_compact": hubert_compact,
}


def register(hub_module: ModuleType | None = None) -> list[str]:
    """Assign every DUET factory onto ``hub_module`` (default: ``s3prl.hub``); returns the names.

    Refuses to shadow a different s3prl upstream of the same name.
    """
    if hub_module is None:
        import s3prl.hub as hub_module  # needs harness.s3prl.compat.install() first on this stack
    for name, factory in UPSTREAMS.items():
        existing = getattr(hub_module, name, None)
        if existing is not None and existing is not factory and \
                not getattr(existing, "__module__", "").startswith("upstream."):
            raise RuntimeError(f"s3prl.hub already has an upstream named {name!r} ({existing.__module__}); "
                               f"DUET will not shadow it")
        setattr(hub_module, name, factory)
    return list(UPSTREAMS)
