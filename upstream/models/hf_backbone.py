"""A transformers WavLM/HuBERT model behind DUET's model contract, for sources (WavLM) that have no
DUET-module counterpart; built by :func:`upstream.importers.build_with_backbone`."""
from __future__ import annotations

import torch
from torch import nn


class HFBackbone(nn.Module):
    """A transformers WavLM/HuBERT model behind DUET's model contract (for WavLM, which has no
    DUET counterpart): ``forward(wav, wav_len) -> StreamOutput`` with its hidden states as the
    content stream (the last one after the final LayerNorm for pre-LN models).

    Padding does not leak: models with a group-norm CNN (WavLM/HuBERT Base, which normalise over
    time, padding included) run one utterance at a time; layer-norm ones get an attention mask.
    Inference only: it is not a registry model, so it cannot be saved with save_checkpoint.
    """

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model
        cfg = hf_model.config
        self.per_item = cfg.feat_extract_norm == "group"
        self.stable = bool(cfg.do_stable_layer_norm)
        rate = 1
        for s in cfg.conv_stride:
            rate *= int(s)
        self._rate = rate

    @property
    def content_rate(self) -> int:
        return self._rate

    @property
    def other_rate(self) -> int:
        return self._rate

    @property
    def num_layers(self) -> int:
        return self.hf.config.num_hidden_layers + 1

    def output_lengths(self, wav_len):
        return self.hf._get_feat_extract_output_lengths(wav_len).to(torch.long)

    def _layers(self, wav, attention_mask=None) -> list:
        out = self.hf(wav, attention_mask=attention_mask, output_hidden_states=True)
        hs = list(out.hidden_states)
        if self.stable:
            hs[-1] = out.last_hidden_state
        return hs

    def forward(self, wav, wav_len):
        from upstream.models.output import StreamOutput

        lens = self.output_lengths(wav_len)
        t = int(lens.max())
        if self.per_item:
            items = [self._layers(wav[b:b + 1, : int(wav_len[b])]) for b in range(wav.shape[0])]
            layers = []
            for i in range(len(items[0])):
                x = wav.new_zeros(wav.shape[0], t, items[0][i].shape[-1])
                for b, it in enumerate(items):
                    n = min(int(lens[b]), it[i].shape[1])
                    x[b, :n] = it[i][0, :n]
                layers.append(x)
        else:
            mask = (torch.arange(wav.shape[1], device=wav.device)[None] < wav_len[:, None]).long()
            keep = (torch.arange(t, device=wav.device)[None] < lens[:, None]).unsqueeze(-1)
            layers = [h[:, :t] * keep for h in self._layers(wav, mask)]
        return StreamOutput(content=layers, content_len=lens, other=[], other_len=torch.zeros_like(lens),
                            utterance=None)
