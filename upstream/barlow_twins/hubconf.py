"""s3prl hub entry for `barlow_twins` (`run_downstream.py -u barlow_twins`)."""
from .expert import UpstreamExpert as _UpstreamExpert


def barlow_twins(ckpt=None, model_config=None, refresh=False, **kwargs):
    """Barlow Twins speech encoder: one encoder trained with the Barlow Twins redundancy-reduction loss.

    ckpt (-k): a DUET checkpoint directory; default: the bundled
        checkpoint checkpoints/barlow-twins-compact.
    model_config (-g): YAML with layer subsets, e.g. `layers: {content: "6-11"}`, and
        `random_init: compact` for a seeded random model (see upstream/expert_base.py).
    Keys (-s): hidden_states, content, other, utterance, last_hidden_state, named subsets.
    """
    return _UpstreamExpert(ckpt=ckpt, model_config=model_config, refresh=refresh, **kwargs)
