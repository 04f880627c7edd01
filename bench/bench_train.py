"""Benchmark: training throughput of each recipe's objective (utterance-seconds per wall second).

One optimiser step = forward + backward + AdamW on a batch of random-speech-like crops, for each
recipe objective, after ``--warmup`` untimed steps; the objectives take turns, one step each per
round for ``--steps`` rounds, and each reports its median step (so a load spike on a shared machine
cannot land on one side of a ratio). Reference measured in the same run: a
transformers ``HubertModel`` of the same shape (hubert_compact's config) with a linear
masked-prediction head, on the same batch — the ratio says how our HuBERT-shaped model trains
against HF's implementation. For log-mel presets (compact, tiny) the reference is torchaudio's
MelSpectrogram, stacked to 20 ms, into HF's feature projection, time masking and encoder (pre-LN:
``HubertEncoderStableLayerNorm``), i.e. the same shape end to end. On CUDA (bf16 autocast) it also reports model FLOP utilisation:
FLOPs counted by ``torch.utils.flop_counter`` for one step / step time / ``--peak-tflops``.

    PYTHONPATH=. python bench/bench_train.py --threads 2 --steps 3            # CPU
    PYTHONPATH=. python bench/bench_train.py --device cuda --preset base --batch 32 --crop 4   # GPU, MFU
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from upstream.facts import SAMPLE_RATE


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="compact")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=float, default=2.0, help="seconds per utterance")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="accelerator bf16 dense peak (H100/H200: 989)")
    ap.add_argument("--recipes", default="hubert-compact,learn2diss-compact,jooci-compact,barlow-twins-compact")
    args = ap.parse_args()

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    S = int(args.crop * SAMPLE_RATE)
    B = args.batch
    from pretrain.data import frames

    T = frames(S)
    g = torch.Generator().manual_seed(0)

    def batch():
        t = torch.arange(S) / SAMPLE_RATE
        f0 = 100 + 100 * torch.rand(B, 1, generator=g)
        wav = 0.1 * torch.sin(2 * torch.pi * f0 * t) + 0.02 * torch.randn(B, S, generator=g)
        b = {"wav": wav, "wav_len": torch.full((B,), S), "wav_b": wav + 0.01 * torch.randn(B, S, generator=g),
             "wav_b_len": torch.full((B,), S), "teacher": torch.randn(B, 256, generator=g),
             "utt_labels.u": torch.randint(0, 20, (B,), generator=g)}
        for k in ("a", "b", "c"):
            b[f"labels.{k}"] = torch.randint(0, 100, (B, T), generator=g)
            b[f"labels_b.{k}"] = b[f"labels.{k}"]
        return {k: v.to(dev) for k, v in b.items()}

    objectives = build_objectives(args.preset, args.recipes.split(","))
    objectives["reference: transformers HubertModel"] = hf_reference(args.preset)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    print(f"device {dev}, {args.threads} threads, batch {B} x {args.crop:g} s, preset {args.preset}, "
          f"torch {torch.__version__}")
    # every objective on the device at once, timed round-robin (one step of each per round) and
    # summarised by the median step: a load spike on a shared machine hits every objective alike,
    # where timing them one after another let it land on one side of the ratio
    b = batch()
    steps, flops = {}, {}
    for name, obj in objectives.items():
        obj.to(dev).train()
        steps[name] = make_step(obj, amp)
        for _ in range(args.warmup):
            steps[name](b)
        if dev.type == "cuda":
            with FlopCounterMode(display=False) as fc:
                steps[name](b)
            flops[name] = fc.get_total_flops()
    times: dict[str, list[float]] = {name: [] for name in objectives}
    for _ in range(args.steps):
        for name in objectives:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            steps[name](b)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    results = {}
    for name, obj in objectives.items():
        dt = statistics.median(times[name])
        uts = B * args.crop / dt
        results[name] = uts
        n_par = sum(p.numel() for p in obj.parameters()) / 1e6
        line = (f"{name:40s} {n_par:6.2f} M params  {dt:7.3f} s/step (median of {args.steps}; "
                f"min {min(times[name]):.3f}, max {max(times[name]):.3f})  {uts:8.2f} utt-s/s")
        if flops.get(name):
            line += f"  {flops[name] / dt / 1e12:7.1f} TFLOP/s  MFU {flops[name] / dt / (args.peak_tflops * 1e12):.1%}"
        print(line, flush=True)
    ref = results.pop("reference: transformers HubertModel")
    if "hubert-compact" in results:
        print(f"hubert-compact vs transformers HubertModel (same shape): {results['hubert-compact'] / ref:.2f}x throughput")
    return 0


def make_step(obj, amp):
    """One optimiser step of ``obj`` on a batch (AdamW; the objective's auxiliary estimator after)."""
    import torch

    params = [p for p in obj.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    aux = obj.aux_parameters() if hasattr(obj, "aux_parameters") else []

    def step(b):
        opt.zero_grad(set_to_none=True)
        with amp:
            out = obj(b)
        out.loss.float().backward()
        opt.step()
        if aux:
            obj.aux_loss(out.cache).backward()
    return step


def build_objectives(preset: str, names: list[str]):
    import dataclasses

    import torch

    from upstream.models.hubert import HubertConfig
    from upstream.registry import build_model, preset_config

    out = {}
    if "hubert-compact" in names:
        from pretrain.recipes.hubert_compact import MaskedPredictionObjective
        m = build_model("hubert_compact", preset)
        out["hubert-compact"] = MaskedPredictionObjective(m, "a", 100, mask_prob=0.65, mask_len=10, proj_dim=128,
                                                          tau=0.1, dim=preset_config("hubert_compact", preset).hidden_size)
    if "learn2diss-compact" in names:
        from pretrain.recipes.learn2diss_compact import Learn2DissObjective, Learn2DissRecipeConfig
        m = build_model("learn2diss", preset)
        out["learn2diss-compact (stage 2)"] = Learn2DissObjective(m, "a", "u", 20, Learn2DissRecipeConfig(),
                                                                   club=m.build_club(256))
    if "jooci-compact" in names:
        from pretrain.recipes.jooci_compact import JoociObjective, JoociRecipeConfig
        cfg = dataclasses.replace(preset_config("jooci", preset), fc_dim=256, decoder_vocab=100)
        m = build_model("jooci", cfg)
        n = cfg.encoder.num_layers
        pairs = [(max(1, n - 2), "a", 100), (max(1, n - 1), "b", 100), (n, "c", 100)]
        out["jooci-compact"] = JoociObjective(m, pairs, JoociRecipeConfig(), cfg.encoder.hidden_size)
    if "barlow-twins-compact" in names:
        from pretrain.recipes.barlow_twins_compact import BarlowTwinsObjective, BarlowTwinsRecipeConfig
        out["barlow-twins-compact"] = BarlowTwinsObjective(build_model("barlow_twins", preset), BarlowTwinsRecipeConfig())
    del HubertConfig, torch
    return out


def hf_reference(preset: str):
    import torch
    import torch.nn.functional as F
    from torch import nn
    from transformers import HubertConfig as HFConfig
    from transformers import HubertModel

    from pretrain.losses.base import LossOutput
    from upstream.registry import preset_config

    c = preset_config("hubert_compact", preset)
    logmel = c.frontend == "logmel"
    # log-mel presets: HF's feature projection reads the stacked log-mel (2 x n_mels wide), so its
    # conv stack is unused and dropped; the log-mel itself is torchaudio's MelSpectrogram
    conv_dim = [2 * c.n_mels] * 7 if logmel else list(c.conv_dim)
    hf = HubertModel(HFConfig(conv_dim=conv_dim, conv_kernel=list(c.conv_kernel), conv_stride=list(c.conv_stride),
                              conv_bias=c.conv_bias, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
                              num_attention_heads=c.num_heads, intermediate_size=c.ffn_dim,
                              num_conv_pos_embeddings=c.pos_conv_kernel, num_conv_pos_embedding_groups=c.pos_conv_groups,
                              feat_extract_norm=c.conv_norm, do_stable_layer_norm=c.layer_norm_first,
                              mask_time_prob=0.65, mask_time_length=10))
    if logmel:
        import torchaudio
        hf.feature_extractor = nn.Identity()
        mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, win_length=400, hop_length=160,
                                                   n_mels=c.n_mels, center=False)

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.hf = hf
            self.head = nn.Linear(c.hidden_size, 100)

        def hidden(self, wav):
            if not logmel:
                return self.hf(wav).last_hidden_state
            x = torch.log(mel.to(wav.device)(wav.float()) + 1e-6).transpose(1, 2)   # (B, M, n_mels)
            if x.shape[1] % 2:
                x = torch.cat([x, x[:, -1:]], 1)
            x = x.reshape(x.shape[0], x.shape[1] // 2, 2 * c.n_mels)
            h = self.hf.feature_projection(x)
            h = self.hf._mask_hidden_states(h)
            return self.hf.encoder(h).last_hidden_state

        def forward(self, b):
            h = self.hidden(b["wav"])
            y = b["labels.a"][:, : h.shape[1]]
            loss = F.cross_entropy(self.head(h).flatten(0, 1).float(), y.flatten())
            return LossOutput(loss)

    return Ref()


if __name__ == "__main__":
    sys.exit(main())
