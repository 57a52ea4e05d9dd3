"""Training clips turned into model inputs, the clips that cannot be used, and batches.

Used by the training script. `ClipPreparer` decodes each clip and extracts its features once, naming the
reason to drop a clip it cannot use rather than failing the whole run on it (or, with
features on the fly, writes a manifest row from the clip's listed duration: see
features_on_the_fly); `drop_unusable_clips` also drops clips whose transcript needs more
CTC frames than the audio gives, and `log_drop_table` reports the counts.
`SpeedPerturbation` plays training clips at random speeds, and `DataCollatorCTCWithPadding`
decodes manifest rows, pads a batch and records each clip's own input length, from which
the evaluation counts its output frames.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import datasets
import numpy as np
import torch
import torchaudio

from . import ctc_frames, speech_data, transcription
from .skip_reasons import (EMPTY_AFTER_NORMALISATION, EMPTY_AUDIO, LONGER_THAN_MAX, NO_FEATURES, SHORTER_THAN_MIN,
                           TOO_MANY_LABELS, TRAINING_DROPS, UNREADABLE_AUDIO)

logger = logging.getLogger(__name__)

# The column that holds a training clip's audio when --speed_perturbation is on.
WAVEFORM_COLUMN = "waveform"
# The batch entry holding each clip's unpadded model input length (samples or feature rows).
INPUT_LENGTHS = "input_lengths"
# Why a clip cannot be used ("" for a usable one), while a split is prepared.
DROP_REASON = "drop_reason"
# The manifest column (features computed batch by batch) marking the clips that the collator
# plays at a random speed: those of the training split under --speed_perturbation.
SPEED_PERTURBED = "speed_perturbed"
# The batch entry counting, per TRAINING_DROPS, the clips left out of that batch because they
# could not be used when it was made (features computed batch by batch).
BATCH_DROPS = "clips_dropped_from_batch"



class PreparedClip(NamedTuple):
    inputs: object  # the model's input (features, or the waveform it is computed from), or None
    length: int  # in the model's input units (samples or feature rows)
    duration: float  # seconds, as decoded
    drop_reason: str  # "" for a usable clip


def prepared_features(preparer: ClipPreparer, dataset: datasets.Dataset) -> datasets.Features:
    """The column types `preparer` writes. Given up front because a dropped clip has no
    inputs, and `datasets` cannot guess a type from a batch of missing values."""
    if preparer.on_the_fly:
        inputs = {preparer.audio_column: dataset.features[preparer.audio_column],  # kept as it is
                  SPEED_PERTURBED: datasets.Value("bool")}
    elif preparer.keep_waveform:
        inputs = {preparer.output_column: datasets.List(datasets.Value("float32"))}
    else:
        feature_extractor = preparer.feature_extractor
        probe = feature_extractor(np.zeros(feature_extractor.sampling_rate, dtype=np.float32),
                                  sampling_rate=feature_extractor.sampling_rate)[preparer.input_name][0]
        column = datasets.Value("float32")
        for _ in range(np.ndim(probe)):  # 1 for raw waveforms, 2 for log-mel frames
            column = datasets.List(column)
        inputs = {preparer.output_column: column}
    return datasets.Features(
        {
            **inputs,
            "labels": datasets.List(datasets.Value("int32")),
            preparer.length_column: datasets.Value("int32"),
            "duration": datasets.Value("float32"),
            DROP_REASON: datasets.Value("string"),
        }
    )


def fast_feature_extractor(feature_extractor):
    """A copy of `feature_extractor` that makes the same features faster: w2v-BERT's log-mel
    filterbank vectorised as eval.py has it (see transcription.install_fast_log_mel, which
    installs it only where the features come out bit for bit the same). A copy, because
    the extractor saved beside the model must stay as transformers wrote it."""
    fast = copy.deepcopy(feature_extractor)
    transcription.install_fast_log_mel(fast)
    return fast


class ClipPreparer:
    """Turns one example into model inputs and labels, or names the reason to drop it.

    With `keep_waveform` (training clips under --speed_perturbation) the clip's samples at
    the model's rate are kept instead of its features: the features of a clip played at a
    new speed can only be computed from its audio, batch by batch. The features are still
    computed here once, to drop the clips they fail on and to measure the length.
    """

    def __init__(self, feature_extractor, tokenizer, input_name: str, length_column: str,
                 audio_column: str, data_args, keep_waveform: bool = False, on_the_fly: bool = False):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.input_name = input_name
        self.length_column = length_column
        self.keep_waveform = keep_waveform
        self.on_the_fly = on_the_fly
        self.output_column = WAVEFORM_COLUMN if keep_waveform else input_name
        self.audio_column = audio_column
        self.min_seconds = data_args.min_duration_in_seconds
        self.max_seconds = data_args.max_duration_in_seconds
        self.sampling_rate = feature_extractor.sampling_rate
        self.input_length = ctc_frames.InputLengthFromSamples(feature_extractor) if on_the_fly else None

    def __call__(self, example: dict) -> dict:
        """One row of the prepared split: the clip's inputs, labels and length, or its drop reason."""
        if not example["target_text"]:
            return self.dropped(EMPTY_AFTER_NORMALISATION)
        if self.on_the_fly:
            return self.manifest_row(example)
        clip = self.model_input(example[self.audio_column])
        if clip.drop_reason:
            return self.dropped(clip.drop_reason, clip.duration)
        return {
            self.output_column: clip.inputs,
            "labels": self.labels(example),
            # In the model's input units (samples, or feature frames), at the clip's own
            # speed: what --train_sampling_strategy group_by_length sorts by, and what the
            # output-frame count is computed from.
            self.length_column: clip.length,
            "duration": clip.duration,
            DROP_REASON: "",
        }

    def manifest_row(self, example: dict) -> dict:
        """A clip's row when its features are computed batch by batch: labels, duration and
        input length, the audio cell left as it is. A listed duration spares decoding;
        a clip without one is decoded once here to measure it (its audio is not kept)."""
        audio, duration = example[self.audio_column], example.get(speech_data.DURATION_COLUMN)
        if duration is None or math.isnan(duration):
            clip = self.model_input(audio, extract=False)
            if clip.drop_reason:
                return self.dropped(clip.drop_reason, clip.duration)
            samples, duration = clip.length, clip.duration
        else:
            path = audio.get("path") if isinstance(audio, dict) else None
            if path and not audio.get("bytes") and not os.path.isfile(path):
                logger.warning(f"Dropping unreadable clip {path}: no such file")
                return self.dropped(UNREADABLE_AUDIO, duration)
            samples = round(duration * self.sampling_rate)
        return {"labels": self.labels(example), self.length_column: self.input_length(samples),
                "duration": duration, SPEED_PERTURBED: self.keep_waveform, DROP_REASON: ""}

    def labels(self, example: dict) -> list[int]:
        return self.tokenizer(example["target_text"]).input_ids

    def model_input(self, audio, extract: bool = True) -> PreparedClip:
        """One clip decoded, checked and turned into the model's input: the one path from an
        audio cell to a usable clip, whether the data is prepared up front or batch by batch
        (features_on_the_fly). Without `extract` the decoded waveform is checked and kept
        as it is, its length in samples: the collator extracts the features (after playing
        it at a random speed, under --speed_perturbation)."""
        waveform = self.read_waveform(audio)
        if waveform is None:
            return PreparedClip(None, 0, 0.0, UNREADABLE_AUDIO)
        duration = len(waveform) / self.sampling_rate
        if len(waveform) == 0:
            return PreparedClip(None, 0, 0.0, EMPTY_AUDIO)
        if duration < self.min_seconds:
            return PreparedClip(None, 0, duration, SHORTER_THAN_MIN)
        if duration > self.max_seconds:
            return PreparedClip(None, 0, duration, LONGER_THAN_MAX)
        if not extract:
            return PreparedClip(waveform, len(waveform), duration, "")
        try:
            inputs = self.feature_extractor(waveform, sampling_rate=self.sampling_rate)[self.input_name][0]
        except Exception as error:  # e.g. a clip shorter than one 25 ms log-mel window
            logger.warning(f"Dropping clip {self.where(audio)}: {error}")
            return PreparedClip(None, 0, duration, NO_FEATURES)
        return PreparedClip(waveform if self.keep_waveform else inputs, len(inputs), duration, "")

    def read_waveform(self, audio) -> np.ndarray | None:
        """The clip as 1-D float samples at the model's rate, or None when it cannot be read."""
        try:
            return speech_data.decode_audio(audio, self.sampling_rate).samples
        except Exception as error:  # decoders raise many types (RuntimeError, OSError, ValueError...)
            logger.warning(f"Dropping unreadable clip {self.where(audio)}: {error}")
            return None

    @staticmethod
    def where(audio) -> str:
        path = audio.get("path") if isinstance(audio, dict) else None
        return path or "(in-memory audio)"

    def dropped(self, reason: str, duration: float = 0.0) -> dict:
        inputs = {SPEED_PERTURBED: self.keep_waveform} if self.on_the_fly else {self.output_column: None}
        return {**inputs, "labels": None, self.length_column: 0, "duration": duration, DROP_REASON: reason}


def drop_unusable_clips(dataset, model, length_column: str,
                        fastest_speed: float = 1.0) -> tuple[datasets.Dataset, Counter]:
    """Keeps the clips `ClipPreparer` accepted whose labels fit the model's output frames,
    even when played at `fastest_speed`; returns them and the number dropped for each reason."""
    reasons = list(dataset[DROP_REASON])
    input_lengths = dataset[length_column]
    if fastest_speed > 1:
        # A clip played faster is shorter and gives fewer output frames. A clip whose labels
        # would not fit then is dropped and counted here, rather than left to an infinite
        # (zeroed) loss each time it happens to be drawn at that speed.
        input_lengths = [math.floor(length / fastest_speed) for length in input_lengths]
    output_frames = ctc_frames.output_frames(model, input_lengths)
    for index, labels in enumerate(dataset["labels"]):
        if not reasons[index] and ctc_frames.required_frames(labels) > output_frames[index]:
            reasons[index] = TOO_MANY_LABELS
    kept = [index for index, reason in enumerate(reasons) if not reason]
    counts = Counter(reason for reason in reasons if reason)
    return dataset.select(kept).remove_columns(DROP_REASON), counts


def log_drop_table(counts: dict[str, Counter], splits: dict[str, datasets.Dataset]) -> None:
    width = max(len(reason) for reason in TRAINING_DROPS)
    header = "clips".ljust(width) + "".join(f"  {name:>10}" for name in counts)
    rows = [reason.ljust(width) + "".join(f"  {counts[name][reason]:>10}" for name in counts)
            for reason in TRAINING_DROPS]
    rows.append("kept".ljust(width) + "".join(f"  {len(splits[name]):>10}" for name in counts))
    hours = {name: sum(splits[name]["duration"]) / 3600 for name in counts}
    rows.append("hours kept".ljust(width) + "".join(f"  {hours[name]:>10.2f}" for name in counts))
    logger.info("Clips dropped, by reason:\n" + "\n".join([header, *rows]))


def prepare_split(dataset, name: str, preparer: ClipPreparer, model, data_args, training_args,
                  fastest_speed: float = 1.0):
    """`preparer` over every clip of `dataset` (by the first process of each machine, then
    read from the cache by the others), less the clips it cannot use, and their counts.
    With `preparer.on_the_fly` the split is a manifest, whose clips the collator decodes
    and turns into features batch by batch.

    Clips whose listed duration (a release's clip_durations.tsv) is out of bounds are
    dropped first, from that column alone: their files are never read, even a damaged one."""
    listed = None
    if speech_data.DURATION_COLUMN in dataset.column_names:
        listed = speech_data.filter_by_duration(dataset, preparer.min_seconds, preparer.max_seconds)
        dataset = listed.dataset
    kept_columns = [preparer.audio_column] if preparer.on_the_fly else []
    with training_args.main_process_first(desc=f"preparing {name}"):
        prepared = dataset.map(
            preparer,
            remove_columns=[column for column in dataset.column_names if column not in kept_columns],
            features=prepared_features(preparer, dataset),
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
            desc=f"preparing {name} " + ("manifest" if preparer.on_the_fly else "audio"),
        )
    kept, counts = drop_unusable_clips(prepared, model, preparer.length_column, fastest_speed)
    if listed is not None:
        counts[SHORTER_THAN_MIN] += listed.too_short
        counts[LONGER_THAN_MAX] += listed.too_long
    return kept, counts


def change_speed(waveform: np.ndarray, factor: float, sampling_rate: int) -> np.ndarray:
    """The clip played `factor` times as fast, like a tape: about len / factor samples long,
    its pitch scaled by `factor` too (what Kaldi's and torchaudio's speed perturbation do).

    Resampling from sampling_rate * factor to sampling_rate is exactly that: the samples
    are read as if they had been recorded at the faster rate.
    """
    if factor == 1:
        return waveform
    samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    faster = torchaudio.functional.resample(samples, orig_freq=round(sampling_rate * factor),
                                            new_freq=sampling_rate)
    return faster.numpy()


class SpeedPerturbation:
    """Plays each clip at one of `factors`, drawn at random on every call.

    It runs when a batch is collated, so a clip gets a new speed each epoch; drawn in the
    data preparation, its speed would be cached and fixed for the whole run. The draw uses
    Python's `random`: `set_seed` seeds it, the DataLoader seeds it in each of its workers,
    and checkpoints save and restore it, so one seed gives one sequence of speeds. torch's
    generator, which orders the batches and draws dropout masks, is left untouched, so
    turning perturbation on changes nothing else about a run.

    Lengths stay approximately right: group_by_length sorts by the length at speed 1, which
    is off by at most the factor, and `drop_unusable_clips` checks the labels against the
    fastest speed.
    """

    def __init__(self, factors: list[float], sampling_rate: int):
        if not factors or min(factors) <= 0:
            raise ValueError(f"--speed_perturbation needs positive factors, not {factors}")
        self.factors = list(factors)
        self.sampling_rate = sampling_rate

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        factor = random.choice(self.factors)
        return change_speed(waveform, factor, self.sampling_rate)


@dataclass
class DataCollatorCTCWithPadding:
    """Pads a batch of inputs with the feature extractor and the labels with -100, which the
    CTC loss ignores, so padding never counts as a label.

    It reads only the model's inputs and the labels from each example (the Trainer leaves
    the other columns in: see `resolve_training_arguments` in the training script). A clip
    kept as audio (training under --speed_perturbation) is first played at a random speed
    and turned into features.

    Each clip's input length before padding goes into the batch as INPUT_LENGTHS: the
    evaluation counts the clip's output frames from it (see ctc_frames), and the training
    script's CTCTrainer takes it out before the model's forward().

    An example that is a manifest row (features on the fly) holds the clip's audio cell: it
    is decoded and checked here, by `clip_reader.model_input`, in the DataLoader worker
    that makes the batch. Such a clip that cannot be used, or any clip whose features
    cannot be computed here, is left out of the batch, with a warning, and counted in its
    BATCH_DROPS entry, which the trainer adds up and logs (features_on_the_fly.BatchDropCounting).
    A batch none of whose clips can be used holds only that entry and empty labels: the
    trainer skips it.

    Decoding in the collator rather than in a `datasets` transform keeps the manifest a
    plain table: a transform would run on every read of its columns too, such as the
    Trainer's length-grouping sampler reading the length column one clip at a time.
    """

    feature_extractor: object
    tokenizer: object
    input_name: str
    speed_perturbation: SpeedPerturbation | None = None
    clip_reader: ClipPreparer | None = None  # decodes manifest rows; any split's preparer will do

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        features, labels, dropped = [], [], Counter()
        for example in examples:
            inputs, reason = self.model_inputs(example)
            if reason:
                dropped[reason] += 1
                continue
            features.append(inputs)
            labels.append({"input_ids": example["labels"]})
        if features:
            batch = self.feature_extractor.pad([{self.input_name: clip} for clip in features], padding=True,
                                               return_tensors="pt")
            batch[INPUT_LENGTHS] = torch.tensor(ctc_frames.input_lengths(features))
            padded = self.tokenizer.pad(labels, padding=True, return_tensors="pt")
            batch["labels"] = padded["input_ids"].masked_fill(padded["attention_mask"].ne(1), -100)
        else:
            batch = {INPUT_LENGTHS: torch.zeros(0, dtype=torch.long), "labels": torch.zeros((0, 0), dtype=torch.long)}
        if dropped:
            batch[BATCH_DROPS] = torch.tensor([dropped[reason] for reason in TRAINING_DROPS])
        return batch

    def model_inputs(self, example: dict) -> tuple[object, str]:
        """The example's features, or None and the reason it cannot be used."""
        if SPEED_PERTURBED in example:  # a manifest row
            clip = self.clip_reader.model_input(example[self.clip_reader.audio_column], extract=False)
            if clip.drop_reason:
                return None, clip.drop_reason
            waveform, perturbed = clip.inputs, example[SPEED_PERTURBED]
        elif WAVEFORM_COLUMN in example:  # kept as audio while preparing, to be perturbed
            waveform, perturbed = np.asarray(example[WAVEFORM_COLUMN], dtype=np.float32), True
        else:
            return example[self.input_name], ""  # computed while preparing the data
        if perturbed and self.speed_perturbation is not None:
            waveform = self.speed_perturbation(waveform)
        sampling_rate = self.feature_extractor.sampling_rate
        try:
            return self.feature_extractor(waveform, sampling_rate=sampling_rate)[self.input_name][0], ""
        except Exception as error:  # e.g. a clip played faster, now shorter than one log-mel window
            logger.warning(f"Leaving a clip of {len(waveform)} samples out of its batch: {error}")
            return None, NO_FEATURES
