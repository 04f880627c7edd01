"""s3prl hub entry for `hubert_compact` (`run_downstream.py -u hubert_compact`)."""
from .expert import UpstreamExpert as _UpstreamExpert


def hubert_compact(ckpt=None, model_config=None, refresh=False, **kwargs):
    """DUET's compact HuBERT backbone (single stream: its layers are the content stream).

    ckpt (-k): a DUET checkpoint directory, a transformers HuBERT (or WavLM) directory or a
        fairseq / s3prl-converted HuBERT .pt; default: the bundled
        checkpoint checkpoints/hubert-compact-compact.
    model_config (-g): YAML with layer subsets, e.g. `layers: {content: "6-11"}`, and
        `random_init: compact` for a seeded random model (see upstream/expert_base.py).
    Keys (-s): hidden_states, content, other, utterance, last_hidden_state, named subsets.
    """
    return _UpstreamExpert(ckpt=ckpt, model_config=model_config, refresh=refresh, **kwargs)
