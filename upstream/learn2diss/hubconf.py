"""s3prl hub entry for `learn2diss` (`run_downstream.py -u learn2diss`)."""
from .expert import UpstreamExpert as _UpstreamExpert


def learn2diss(ckpt=None, model_config=None, refresh=False, **kwargs):
    """Learn2Diss: frozen HuBERT-style backbone + frame-level encoder (content) and ECAPA-TDNN utterance encoder (other), MI minimised with CLUB.

    ckpt (-k): a DUET checkpoint directory, a transformers HuBERT directory or a
        fairseq / s3prl-converted HuBERT .pt (used as the backbone); default: the bundled
        checkpoint checkpoints/learn2diss-compact.
    model_config (-g): YAML with layer subsets, e.g. `layers: {content: "6-11"}`, and
        `random_init: compact` for a seeded random model (see upstream/expert_base.py).
    Keys (-s): hidden_states, content, other, utterance, last_hidden_state, named subsets.
    """
    return _UpstreamExpert(ckpt=ckpt, model_config=model_config, refresh=refresh, **kwargs)
