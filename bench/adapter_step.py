"""Training step time of an MMS-style adapter fine-tune against a full fine-tune of the same
model, in one process, interleaved. Run by hand; not a test.

    .venv/bin/python bench/adapter_step.py                        # the tests' tiny shape
    .venv/bin/python bench/adapter_step.py --hidden-size 256 --layers 4

Both arms start from the same random MMS-shaped Wav2Vec2ForCTC (stable layer norm,
adapter layers of --adapter-dim), train on the same random batch of --batch-size clips of
--seconds seconds with AdamW, and differ only in what is trainable:

- adapter: what the repo's training script does for an adapter model
  (`adapters.prepare_adapter_training`: the adapter layers and the output layer);
- full: what it does otherwise (`freeze_feature_encoder()`: everything else).

A step is forward, CTC loss, backward and the optimizer step. Each arm runs --warmup steps
first, then the arms alternate --repeats times, --steps steps each; the median step time
of each arm and their ratio are printed with the load average.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

# The shipped module: the runtime package a stamped repo carries as ctcforge_runtime/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ctcforge.runtime import adapters  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--adapter-dim", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def model_config(args) -> Wav2Vec2Config:
    """The tests' tiny shape at the default sizes: XLS-R/MMS style, three convolutions."""
    heads = max(1, args.hidden_size // 16)
    return Wav2Vec2Config(hidden_size=args.hidden_size, num_hidden_layers=args.layers, num_attention_heads=heads,
                          intermediate_size=2 * args.hidden_size, conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3),
                          conv_stride=(5, 4, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                          feat_extract_norm="layer", do_stable_layer_norm=True, adapter_attn_dim=args.adapter_dim,
                          vocab_size=args.vocab_size, pad_token_id=0, ctc_zero_infinity=True,
                          mask_time_prob=0.0, layerdrop=0.0)


def arm(base: Wav2Vec2ForCTC, adapter_only: bool):
    model = copy.deepcopy(base).train()
    if adapter_only:
        vocab = {str(i): i for i in range(model.config.vocab_size)}
        adapters.prepare_adapter_training(model, "xyz", [], vocab)
    else:
        model.freeze_feature_encoder()
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(trainable, lr=1e-4), sum(p.numel() for p in trainable)


def timed_steps(model, optimizer, batch, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    base = Wav2Vec2ForCTC(model_config(args))
    samples = int(args.seconds * 16000)
    batch = {"input_values": torch.randn(args.batch_size, samples),
             "attention_mask": torch.ones(args.batch_size, samples, dtype=torch.long),
             "labels": torch.randint(1, args.vocab_size, (args.batch_size, 12))}
    arms = {name: arm(base, name == "adapter") for name in ("adapter", "full")}
    total = sum(p.numel() for p in base.parameters())
    for name, (model, optimizer, trainable) in arms.items():
        print(f"{name}: {trainable:,} of {total:,} parameters trained ({trainable / total:.2%})")
        timed_steps(model, optimizer, batch, args.warmup)
    times = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, (model, optimizer, _) in arms.items():
            times[name] += timed_steps(model, optimizer, batch, args.steps)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load average {load_average()}")
    for name, median in medians.items():
        print(f"{name}: median step {median * 1000:.1f} ms over {len(times[name])} steps")
    print(f"adapter / full step time: {medians['adapter'] / medians['full']:.2f}")


if __name__ == "__main__":
    main()
