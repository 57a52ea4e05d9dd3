"""Features computed batch by batch, for splits too large to prepare up front.

Used by the training script. With `--features_on_the_fly yes` (or `auto` on a large split) a split is
prepared as a manifest only: each clip's audio cell (its path), duration, labels and model
input length, the duration as the release lists it (clip_durations.tsv) so that no clip is
decoded up front (`ClipPreparer.manifest_row`). The collator, which runs in the DataLoader's
workers, then decodes each batch's clips through the same `ClipPreparer.model_input` that
prepares a split up front, and computes their features.

Why not always: prepared up front, the features of a split are held whole in memory (the
loader builds a local release's splits in memory, so `datasets.map` writes them there, not
to a cache file), and every clip is decoded and featurised before the first step; batch by batch, each
clip costs a decode every epoch, which the workers do beside the training. `auto` prepares
up front while the estimated features stay under PRECOMPUTED_LIMIT_BYTES.

A clip that fails when its batch is made is left out of that batch by the collator and
counted; `BatchDropCounting` adds the counts to the Trainer's logs, so they are kept in
trainer_state.json's log history (a resumed run continues them), and `log_batch_drops`
reports the totals when training ends.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import torch

from . import clip_preparation, speech_data
from .skip_reasons import TRAINING_DROPS

logger = logging.getLogger(__name__)

AUTO, YES, NO = "auto", "yes", "no"
MODES = (AUTO, YES, NO)
# `auto` computes a split's features batch by batch when, prepared up front, they would take
# more than this in memory: about 18 hours of audio for a log-mel model (32 KB a second),
# 9 hours for a raw-waveform one (64 KB a second). Below it, preparing once saves each epoch's
# decoding and costs little memory beside the model's; above it, the prepared split starts to
# compete with the model and the DataLoader workers for a training machine's RAM, and takes
# the better part of an hour on a few cores before the first step (bench/data_scale.py).
PRECOMPUTED_LIMIT_BYTES = 2 * 1024**3
# The seconds assumed for a clip the release lists no duration for (about a Common Voice clip).
TYPICAL_CLIP_SECONDS = 5.0
# The log entries counting clips left out of batches, one per drop reason.
LOG_PREFIX = "clips_dropped_while_batching/"


def precomputed_bytes(dataset, feature_extractor, keep_waveform: bool) -> int:
    """About how much memory `dataset`'s model inputs take when prepared up front: its
    listed seconds (TYPICAL_CLIP_SECONDS for a clip without) times the float32 inputs the
    extractor makes of a second of audio (its samples, when the waveform is kept)."""
    if speech_data.DURATION_COLUMN in dataset.column_names:
        seconds = speech_data.column_values(dataset, speech_data.DURATION_COLUMN).to_numpy().astype(np.float64)
        total_seconds = float(np.where(np.isnan(seconds), TYPICAL_CLIP_SECONDS, seconds).sum())
    else:
        total_seconds = len(dataset) * TYPICAL_CLIP_SECONDS
    rate = feature_extractor.sampling_rate
    if keep_waveform:
        values_per_second = rate
    else:
        second = feature_extractor(np.zeros(rate, dtype=np.float32), sampling_rate=rate)
        values_per_second = np.size(second[feature_extractor.model_input_names[0]][0])
    return int(total_seconds * values_per_second * np.dtype(np.float32).itemsize)


def computes_on_the_fly(mode: str, dataset, feature_extractor, keep_waveform: bool, split: str) -> bool:
    """Whether `split`'s features are computed batch by batch (`mode` yes, or auto and large)."""
    if mode not in MODES:
        raise ValueError(f"--features_on_the_fly is one of {', '.join(MODES)}, not {mode!r}")
    if mode != AUTO:
        return mode == YES
    estimate = precomputed_bytes(dataset, feature_extractor, keep_waveform)
    on_the_fly = estimate > PRECOMPUTED_LIMIT_BYTES
    logger.info(f"{split}: its features would take about {estimate / 1024**3:.2f} GiB prepared up front; "
                + ("computing them batch by batch" if on_the_fly else "preparing them up front")
                + f" (--features_on_the_fly auto: batch by batch above {PRECOMPUTED_LIMIT_BYTES / 1024**3:.0f} GiB)")
    return on_the_fly


class BatchDropCounting:
    """A Trainer mixin (listed before Trainer) for the collator's BATCH_DROPS: it takes the
    counts out of each batch before the model sees it, adds them to the next log entry
    (one `LOG_PREFIX + reason` per reason, summed over the processes of a distributed run),
    and skips a batch none of whose clips could be used."""

    def training_step(self, model, inputs, *args, **kwargs):
        inputs = self.take_batch_drops(inputs)
        if holds_no_clips(inputs):
            return torch.zeros((), device=self.args.device)  # no forward, no gradient: nothing to learn from
        return super().training_step(model, inputs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self.take_batch_drops(inputs)
        if holds_no_clips(inputs):
            return None, None, None  # the evaluation loop skips a step without outputs
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    def take_batch_drops(self, inputs: dict) -> dict:
        counts = inputs.get(clip_preparation.BATCH_DROPS)
        if counts is None:
            return inputs
        pending = self.__dict__.setdefault("pending_batch_drops", Counter())
        pending.update(dict(zip(TRAINING_DROPS, counts.tolist())))
        return {key: value for key, value in inputs.items() if key != clip_preparation.BATCH_DROPS}

    def log(self, logs: dict, *args, **kwargs) -> None:
        pending = self.__dict__.setdefault("pending_batch_drops", Counter())
        counts = [pending[reason] for reason in TRAINING_DROPS]
        if self.args.world_size > 1:
            # Every process logs at the same steps, so each takes part in this sum.
            counts = self.accelerator.reduce(torch.tensor(counts, device=self.args.device), reduction="sum").tolist()
        pending.clear()
        logs = {**logs, **{LOG_PREFIX + reason: count
                           for reason, count in zip(TRAINING_DROPS, counts) if count}}
        super().log(logs, *args, **kwargs)


def holds_no_clips(inputs: dict) -> bool:
    """The collator's batch of no usable clips (empty labels); a batch without labels is not one."""
    labels = inputs.get("labels")
    return labels is not None and len(labels) == 0


def batch_drop_totals(log_history: list[dict]) -> Counter:
    """The clips left out of batches so far, by reason, from the Trainer's log history."""
    totals = Counter()
    for entry in log_history:
        totals.update({key[len(LOG_PREFIX):]: int(value) for key, value in entry.items()
                       if key.startswith(LOG_PREFIX)})
    return totals


def log_batch_drops(log_history: list[dict]) -> int:
    """Reports the clips left out of batches in this run (resumed runs included); their
    number, which is 0 when every clip could be used."""
    totals = batch_drop_totals(log_history)
    if totals:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in totals.items())
        logger.warning(f"{sum(totals.values())} clips were left out of their batches, as they could not be used "
                       f"when the batch was made ({reasons}); the warnings above name their files. A clip counts "
                       "each time it is drawn, once an epoch.")
    return sum(totals.values())
