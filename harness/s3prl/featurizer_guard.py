"""The Featurizer guard: s3prl's Featurizer silently falls back to ``hidden_states`` when ``-s`` names
a key the upstream does not return; for DUET experts it must refuse (a KeyError listing the valid
keys), or a typo would evaluate the wrong stream. A patch of s3prl, so it lives in the compat layer."""
from __future__ import annotations

# upstream classes besides DUET's experts whose ``check_key(key)`` the guard calls (the feature cache's
# `duet_cached` expert registers itself here: harness.features.cache.register)
GUARDED: list[type] = []


def guard_upstream_class(cls: type) -> None:
    """Have the Featurizer guard also call ``cls.check_key(feature_selection)`` (idempotent)."""
    if cls not in GUARDED:
        GUARDED.append(cls)


def install_featurizer_guard() -> None:
    """Make s3prl's Featurizer refuse an unknown ``-s`` key for DUET experts (KeyError listing the
    valid keys) instead of silently falling back to ``hidden_states``. Other upstreams unchanged;
    idempotent."""
    from s3prl.upstream import interfaces

    from upstream.expert_base import DuetUpstreamExpert

    featurizer = interfaces.Featurizer
    original = featurizer.__init__
    if getattr(original, "_duet_guard", False):
        return

    def __init__(self, upstream, feature_selection="hidden_states", *args, **kwargs):
        inner = getattr(upstream, "module", upstream)  # DDP-wrapped
        if isinstance(inner, (DuetUpstreamExpert, *GUARDED)):
            inner.check_key(feature_selection)
        original(self, upstream, feature_selection, *args, **kwargs)

    __init__._duet_guard = True
    __init__.__wrapped__ = original
    featurizer.__init__ = __init__
