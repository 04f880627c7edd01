"""s3prl hub entry for `jooci` (`run_downstream.py -u jooci`)."""
from .expert import UpstreamExpert as _UpstreamExpert


def jooci(ckpt=None, model_config=None, refresh=False, **kwargs):
    """JOOCI: shared CNN, content encoder (masked prediction) and other encoder (Res2Net, split-and-append) in one forward pass.

    ckpt (-k): a DUET checkpoint directory; default: the bundled
        checkpoint checkpoints/jooci-compact.
    model_config (-g): YAML with layer subsets, e.g. `layers: {content: "6-11"}`, and
        `random_init: compact` for a seeded random model (see upstream/expert_base.py).
    Keys (-s): hidden_states, content, other, utterance, last_hidden_state, named subsets.
    """
    return _UpstreamExpert(ckpt=ckpt, model_config=model_config, refresh=refresh, **kwargs)
