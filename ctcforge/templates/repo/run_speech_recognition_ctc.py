#!/usr/bin/env python
"""Fine-tune (or train from scratch) this repo's CTC speech recognition model.

The command line is that of the transformers example `run_speech_recognition_ctc.py`
used in the 2022 robust speech event, so its command lines keep working here. What
differs, and why:

- Transcripts go through this repo's `text_normalizer.py`, the same normaliser that
  `eval.py` and the n-gram LM text use, so training and scoring can never disagree.
- Audio comes from `speech_data.load_speech_dataset` (local Common Voice folders and the
  like): the Hub is not reachable, and `datasets` no longer runs loading scripts.
- The vocabulary is built from the training split only: a letter seen only in the test
  split is a label the model could never learn.
- A clip that cannot be used (unreadable audio, empty transcript, too long...) is
  dropped, counted and reported; one bad file never stops a run.
- A run restarted with the same output_dir resumes from its last complete checkpoint,
  skipping one that was cut off while being written.
- With no weights in the model folder (the `tiny` base model and catalogue configs are
  written offline), the model starts from random initialisation.

Example:
    python run_speech_recognition_ctc.py --model_name_or_path ./ \
        --dataset_name /data/cv-corpus-17.0 --dataset_config_name hy-AM \
        --output_dir ./ --do_train --do_eval --max_steps 2000
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import jiwer
import numpy as np
import torch
import transformers
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    EvalPrediction,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    Wav2Vec2CTCTokenizer,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import speech_data
import text_normalizer

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
SUPPORTED_METRICS = ("wer", "cer")


@dataclass
class ModelArguments:
    """Which model to start from, and the regularisation settings written into its config."""

    model_name_or_path: str = field(
        metadata={"help": "Model folder (this repo: ./) or a model id already in the local cache."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Folder whose vocab.json to use as is, instead of choosing one (see README)."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where cached models are stored."})
    freeze_feature_encoder: bool = field(
        default=True,
        metadata={"help": "Freeze the convolutional feature encoder of a pretrained wav2vec2 model."},
    )
    # The defaults below are the upstream script's: they replace whatever the model's own
    # config.json says, so a 2022 command line gives the same model settings today.
    attention_dropout: float = field(
        default=0.0, metadata={"help": "Dropout of the attention probabilities."}
    )
    activation_dropout: float = field(
        default=0.0, metadata={"help": "Dropout inside the fully connected feed-forward layers."}
    )
    feat_proj_dropout: float = field(default=0.0, metadata={"help": "Dropout after the feature projection."})
    hidden_dropout: float = field(
        default=0.0, metadata={"help": "Dropout of all fully connected layers in the embeddings and encoder."}
    )
    final_dropout: float = field(default=0.0, metadata={"help": "Dropout before the CTC head."})
    mask_time_prob: float = field(
        default=0.05,
        metadata={"help": "SpecAugment: probability that a frame starts a masked span along time."},
    )
    mask_time_length: int = field(default=10, metadata={"help": "SpecAugment: length of a time mask."})
    mask_feature_prob: float = field(
        default=0.0,
        metadata={"help": "SpecAugment: probability that a feature channel starts a masked span."},
    )
    mask_feature_length: int = field(default=10, metadata={"help": "SpecAugment: length of a feature mask."})
    layerdrop: float = field(default=0.0, metadata={"help": "Probability of skipping a whole encoder layer."})
    ctc_loss_reduction: str = field(default="mean", metadata={"help": "CTC loss reduction: mean or sum."})
    # Upstream defaults to False. A clip whose transcript needs more CTC frames than its
    # audio gives has an infinite loss, and one infinite loss turns every weight into NaN.
    # Training clips like that are dropped below, but eval clips are not, and random
    # initialisation can briefly produce such losses too; zeroing them costs nothing.
    ctc_zero_infinity: bool = field(
        default=True,
        metadata={"help": "Replace infinite CTC losses (impossible alignments) by zero."},
    )


@dataclass
class DataTrainingArguments:
    """Which data to train and evaluate on, and how to prepare it."""

    dataset_name: str = field(
        metadata={"help": "Dataset for speech_data.load_speech_dataset, e.g. a Common Voice folder."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Its configuration, e.g. the Common Voice locale hy-AM."}
    )
    train_split_name: str = field(
        default="train", metadata={"help": "Training split; sums such as train+dev work."}
    )
    eval_split_name: str = field(default="test", metadata={"help": "Evaluation split."})
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio."})
    text_column_name: str = field(default="sentence", metadata={"help": "Column holding the transcript."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached preprocessing."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes used to prepare the audio."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training clips (for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N evaluation clips (for quick runs)."}
    )
    chars_to_ignore: list[str] | None = field(
        default=None,
        metadata={
            "help": "Accepted for old command lines. language_profile.json already lists the characters "
            "to delete; any given here that it lacks are deleted too, for this run only."
        },
    )
    eval_metrics: list[str] | None = field(
        default=None,
        metadata={"help": "wer and/or cer; by default the `metrics` of language_profile.json."},
    )
    max_duration_in_seconds: float = field(
        default=20.0, metadata={"help": "Drop clips longer than this (they cost the most memory)."}
    )
    min_duration_in_seconds: float = field(default=0.0, metadata={"help": "Drop clips shorter than this."})
    preprocessing_only: bool = field(
        default=False, metadata={"help": "Prepare (and cache) the data, then stop before training."}
    )
    unk_token: str = field(default="[UNK]", metadata={"help": "The unknown-character token."})
    pad_token: str = field(default="[PAD]", metadata={"help": "The padding token, also the CTC blank."})
    word_delimiter_token: str = field(default="|", metadata={"help": "The token written for a space."})
    phoneme_language: str | None = field(
        default=None,
        metadata={"help": "Accepted for old command lines; unused (this repo writes characters)."},
    )
    # transformers 5 dropped these from TrainingArguments; they are accepted here so that
    # 2022 command lines run unchanged, and mapped onto their successors.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh in output_dir: ignore its checkpoints and replace a model there."},
    )
    evaluation_strategy: str | None = field(
        default=None, metadata={"help": "Old name of --eval_strategy."}
    )
    group_by_length: bool = field(
        default=False, metadata={"help": "Old form of --train_sampling_strategy group_by_length."}
    )
    use_auth_token: bool = field(
        default=False, metadata={"help": "Accepted for old command lines; unused (no Hub access)."}
    )


# ---------------------------------------------------------------------------------------
# Arguments and logging
# ---------------------------------------------------------------------------------------


def parse_arguments() -> tuple[ModelArguments, DataTrainingArguments, TrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        # Like upstream: a single JSON file holds all the arguments.
        return parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
    return parser.parse_args_into_dataclasses()


def apply_legacy_flags(
    data_args: DataTrainingArguments, training_args: TrainingArguments
) -> TrainingArguments:
    """Maps the old flags onto today's TrainingArguments fields.

    `dataclasses.replace` builds a new TrainingArguments, so its own checks and derived
    defaults (eval_steps falling back to logging_steps, say) run on the mapped values.
    """
    changes = {}
    if data_args.evaluation_strategy is not None:
        changes["eval_strategy"] = data_args.evaluation_strategy
    if data_args.group_by_length:
        changes["train_sampling_strategy"] = "group_by_length"
    if data_args.use_auth_token:
        logger.info("--use_auth_token ignored: this script never contacts the Hub.")
    if data_args.phoneme_language:
        logger.info("--phoneme_language ignored: this repo's model writes characters, not phonemes.")
    return dataclasses.replace(training_args, **changes) if changes else training_args


def setup_logging(training_args: TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    # This script's own messages (the dropped-clip table among them) are worth reading on
    # the main process; the libraries follow --log_level.
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    library_level = training_args.get_process_log_level()
    datasets.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


# ---------------------------------------------------------------------------------------
# Output folder and checkpoints
# ---------------------------------------------------------------------------------------


def checkpoint_to_resume(training_args: TrainingArguments, overwrite_output_dir: bool) -> str | None:
    """The checkpoint training continues from: the one asked for, else the newest complete
    one in output_dir (unless --overwrite_output_dir), else None."""
    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    output_dir = Path(training_args.output_dir)
    if not training_args.do_train or overwrite_output_dir or not output_dir.is_dir():
        return None
    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint}; pass --overwrite_output_dir to start afresh.")
        return str(checkpoint)
    if has_model_weights(output_dir):
        raise SystemExit(
            f"error: {output_dir} already holds a trained model and no checkpoint to resume from; "
            "pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )
    return None


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint-N folder that was written to the end, warning about newer
    ones that were not (a run killed while saving leaves such a folder behind)."""
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    steps = {
        int(match.group(1)): path
        for path in output_dir.iterdir()
        if path.is_dir() and (match := pattern.match(path.name))
    }
    for step in sorted(steps, reverse=True):
        problem = checkpoint_problem(steps[step])
        if problem is None:
            return steps[step]
        logger.warning(f"Skipping {steps[step]}: {problem}; trying the one before it.")
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from, or None when it looks complete."""
    # The Trainer writes trainer_state.json last, after the weights, optimizer and scheduler.
    state_file = checkpoint / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json (saving was interrupted)"
    try:
        json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"trainer_state.json does not parse ({error})"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights and not (checkpoint / "pytorch_model.bin").is_file():
        return "no model weights"
    for weight_file in weights:
        try:
            # Opening reads and checks the header, which catches a truncated file cheaply.
            with safe_open(str(weight_file), framework="pt"):
                pass
        except Exception as error:  # safetensors raises its own error types
            return f"{weight_file.name} does not load ({error})"
    return None


def has_model_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_FILES)


# ---------------------------------------------------------------------------------------
# Text and vocabulary
# ---------------------------------------------------------------------------------------


def load_normalizer(extra_chars_to_ignore: list[str] | None) -> text_normalizer.Normalizer:
    """The repo's normaliser, plus any --chars_to_ignore the profile does not list yet.

    Upstream put the given strings into one regex character class, so each character of
    each entry is ignored on its own; whitespace is skipped, as deleting it would run all
    the words together.
    """
    normalizer = text_normalizer.load()
    listed = normalizer.profile.get("chars_to_ignore", [])
    given = "".join(extra_chars_to_ignore or [])
    extra = [c for c in dict.fromkeys(given) if not c.isspace() and c not in listed]
    if not extra:
        return normalizer
    # eval.py reads only language_profile.json, so characters deleted here alone would be
    # kept when scoring: they belong in the profile to last.
    logger.warning(
        f"--chars_to_ignore adds {' '.join(extra)} to the profile's list for this run only; "
        "add them to language_profile.json so that eval.py deletes them too."
    )
    return text_normalizer.Normalizer({**normalizer.profile, "chars_to_ignore": listed + extra})


def build_vocabulary(characters: set[str], data_args: DataTrainingArguments) -> dict[str, int]:
    """The upstream order: the word delimiter (for the space) and the letters sorted, then
    the unknown and padding tokens, so checkpoints trained upstream line up."""
    special = {data_args.word_delimiter_token, data_args.unk_token, data_args.pad_token}
    letters = sorted(characters - {" "} - special)
    tokens = [data_args.word_delimiter_token, *letters, data_args.unk_token, data_args.pad_token]
    return {token: index for index, token in enumerate(tokens)}


def read_vocabulary(folder: Path) -> dict[str, int] | None:
    vocab_file = folder / "vocab.json"
    if not vocab_file.is_file():
        return None
    return json.loads(vocab_file.read_text(encoding="utf-8"))


def uncovered_characters(vocab: dict[str, int], characters: set[str], word_delimiter: str) -> set[str]:
    """Characters of the text that the vocabulary has no label for."""
    labels = set(vocab) | ({" "} if word_delimiter in vocab else set())
    return characters - labels


def missing_special_tokens(vocab: dict[str, int], data_args: DataTrainingArguments) -> list[str]:
    tokens = (data_args.word_delimiter_token, data_args.unk_token, data_args.pad_token)
    return [token for token in tokens if token not in vocab]


def choose_vocabulary(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_characters: set[str] | None,
    resuming_in: Path | None,
) -> dict[str, int]:
    """The label set, first match wins:

    1. resuming: the run folder's vocab.json, which the checkpoint's output layer was
       built for;
    2. --tokenizer_name_or_path: its vocab.json, as given;
    3. the model folder's vocab.json (this repo's, from the profile's alphabet) when it
       covers every character of the normalised training text;
    4. otherwise a new one from the training text.
    """
    if resuming_in is not None and (vocab := read_vocabulary(resuming_in)) is not None:
        logger.info(f"Vocabulary: {resuming_in / 'vocab.json'} (resuming)")
        return vocab
    if model_args.tokenizer_name_or_path:
        tokenizer_folder = Path(model_args.tokenizer_name_or_path)
        vocab = read_vocabulary(tokenizer_folder)
        if vocab is None:
            raise SystemExit(f"error: no vocab.json in --tokenizer_name_or_path {tokenizer_folder}")
        logger.info(f"Vocabulary: {tokenizer_folder / 'vocab.json'} (--tokenizer_name_or_path)")
        return vocab
    model_folder = Path(model_args.model_name_or_path)
    model_vocab = read_vocabulary(model_folder)
    if training_characters is None:
        if model_vocab is None:
            raise SystemExit(
                "error: without a training split the vocabulary must come from the model folder "
                "or --tokenizer_name_or_path, and neither has a vocab.json."
            )
        return model_vocab
    if model_vocab is not None:
        uncovered = uncovered_characters(model_vocab, training_characters, data_args.word_delimiter_token)
        missing = sorted(uncovered) + missing_special_tokens(model_vocab, data_args)
        if not missing:
            logger.info(f"Vocabulary: {model_folder / 'vocab.json'} (covers the training text)")
            return model_vocab
        logger.warning(
            f"{model_folder / 'vocab.json'} lacks {' '.join(missing)}: "
            "building the vocabulary from the training text instead."
        )
    vocab = build_vocabulary(training_characters, data_args)
    logger.info(f"Vocabulary: {len(vocab)} labels built from the training text")
    return vocab


def warn_about_unknown_training_characters(vocab: dict[str, int], characters: set[str] | None,
                                           data_args: DataTrainingArguments) -> None:
    """A vocabulary taken as given (resuming, --tokenizer_name_or_path) may lack letters of
    the training text; they are trained as [UNK], which is worth knowing."""
    missing = uncovered_characters(vocab, characters or set(), data_args.word_delimiter_token)
    if missing:
        logger.warning(f"The training text holds {''.join(sorted(missing))!r}, which the vocabulary "
                       f"lacks: those characters are learnt as {data_args.unk_token}.")


def create_tokenizer(
    vocab: dict[str, int], output_dir: Path, data_args: DataTrainingArguments
) -> Wav2Vec2CTCTokenizer:
    """A CTC tokenizer over exactly the labels of `vocab`, saved as output_dir/vocab.json."""
    missing = missing_special_tokens(vocab, data_args)
    if missing:
        raise SystemExit(
            f"error: the vocabulary has no {' '.join(missing)}; set --word_delimiter_token, "
            "--unk_token and --pad_token to the special tokens it uses."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = output_dir / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file),
        unk_token=data_args.unk_token,
        pad_token=data_args.pad_token,
        word_delimiter_token=data_args.word_delimiter_token,
        # transformers 5 would otherwise add <s> and </s>, two labels more than vocab.json
        # has, and the model's output layer, the tokenizer and an LM decoder would disagree.
        bos_token=None,
        eos_token=None,
    )
    if len(tokenizer) != len(vocab):
        raise SystemExit(f"error: the tokenizer has {len(tokenizer)} labels but vocab.json {len(vocab)}")
    return tokenizer


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------


def configure_for_ctc(config, model_args: ModelArguments, tokenizer: Wav2Vec2CTCTokenizer) -> None:
    """Writes the regularisation settings and the label set into the model config."""
    settings = {
        "attention_dropout": model_args.attention_dropout,
        "activation_dropout": model_args.activation_dropout,
        "feat_proj_dropout": model_args.feat_proj_dropout,
        "hidden_dropout": model_args.hidden_dropout,
        "final_dropout": model_args.final_dropout,
        "mask_time_prob": model_args.mask_time_prob,
        "mask_time_length": model_args.mask_time_length,
        "mask_feature_prob": model_args.mask_feature_prob,
        "mask_feature_length": model_args.mask_feature_length,
        "layerdrop": model_args.layerdrop,
        "ctc_loss_reduction": model_args.ctc_loss_reduction,
        "ctc_zero_infinity": model_args.ctc_zero_infinity,
        "pad_token_id": tokenizer.pad_token_id,
        "vocab_size": len(tokenizer),
    }
    for name, value in settings.items():
        if hasattr(config, name):
            setattr(config, name, value)
        else:
            logger.info(f"{config.model_type} models have no {name}; that setting is ignored.")


def load_model(model_args: ModelArguments, config) -> tuple[torch.nn.Module, bool]:
    """The CTC model, and whether it was randomly initialised (no weights to load)."""
    model_path = Path(model_args.model_name_or_path)
    if model_path.is_dir() and not has_model_weights(model_path):
        logger.warning(f"No weights in {model_path}: the model starts from random initialisation.")
        return AutoModelForCTC.from_config(config), True
    model = AutoModelForCTC.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        cache_dir=model_args.cache_dir,
        # The output layer is sized for the vocabulary; a pretrained encoder has none, or
        # one for another label set, and it is then freshly initialised.
        ignore_mismatched_sizes=True,
    )
    return model, False


def freeze_feature_encoder(model: torch.nn.Module, randomly_initialised: bool) -> None:
    if randomly_initialised:
        logger.warning(
            "Not freezing the feature encoder: it is randomly initialised and has to learn too."
        )
    elif hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    else:
        logger.info(f"{model.config.model_type} has no convolutional feature encoder to freeze.")


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

UNREADABLE_AUDIO = "unreadable audio"
EMPTY_AUDIO = "zero-length audio"
EMPTY_TRANSCRIPT = "empty transcript after normalisation"
TOO_SHORT = "shorter than min_duration_in_seconds"
TOO_LONG = "longer than max_duration_in_seconds"
NO_FEATURES = "feature extraction failed"
TOO_MANY_LABELS = "more labels than output frames"
DROP_REASONS = (
    UNREADABLE_AUDIO, EMPTY_AUDIO, EMPTY_TRANSCRIPT, TOO_SHORT, TOO_LONG, NO_FEATURES, TOO_MANY_LABELS
)


def load_split(data_args: DataTrainingArguments, split: str, sampling_rate: int, max_samples: int | None):
    """One split, its audio column switched to undecoded (path and bytes).

    Decoding then happens clip by clip in `ClipPreparer`, where a file that fails to
    decode is counted and skipped; left to `datasets`, it would fail while reading the
    row, outside any code of ours, and end the whole `map`.
    """
    try:
        dataset = speech_data.load_speech_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            split,
            text_column=data_args.text_column_name,
            sampling_rate=sampling_rate,
        )
    except speech_data.DatasetError as error:
        raise SystemExit(f"error: {error}")
    for column in (data_args.audio_column_name, data_args.text_column_name):
        if column not in dataset.column_names:
            columns = ", ".join(dataset.column_names)
            raise SystemExit(f"error: split {split!r} has no column {column!r} (columns: {columns})")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if isinstance(dataset.features[data_args.audio_column_name], datasets.Audio):
        dataset = dataset.cast_column(data_args.audio_column_name, datasets.Audio(decode=False))
    return dataset


def add_normalised_text(dataset, data_args: DataTrainingArguments, normalizer, training_args):
    with training_args.main_process_first(desc="normalising transcripts"):
        return dataset.map(
            lambda text: {"target_text": normalizer(text or "")},
            input_columns=[data_args.text_column_name],
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
            desc="normalising transcripts",
        )


def prepared_features(feature_extractor, input_name: str, length_column: str) -> datasets.Features:
    """The column types `ClipPreparer` writes. Given up front because a dropped clip has
    no inputs, and `datasets` cannot guess a type from a batch of missing values."""
    probe = feature_extractor(np.zeros(feature_extractor.sampling_rate, dtype=np.float32),
                              sampling_rate=feature_extractor.sampling_rate)[input_name][0]
    inputs = datasets.Value("float32")
    for _ in range(np.ndim(probe)):  # 1 for raw waveforms, 2 for log-mel frames
        inputs = datasets.List(inputs)
    return datasets.Features(
        {
            input_name: inputs,
            "labels": datasets.List(datasets.Value("int32")),
            length_column: datasets.Value("int32"),
            "duration": datasets.Value("float32"),
            "drop_reason": datasets.Value("string"),
        }
    )


class ClipPreparer:
    """Turns one example into model inputs and labels, or names the reason to drop it."""

    def __init__(self, feature_extractor, tokenizer, input_name: str, length_column: str,
                 audio_column: str, data_args: DataTrainingArguments):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.input_name = input_name
        self.length_column = length_column
        self.audio_column = audio_column
        self.min_seconds = data_args.min_duration_in_seconds
        self.max_seconds = data_args.max_duration_in_seconds
        self.sampling_rate = feature_extractor.sampling_rate
        self.decoder = datasets.Audio(sampling_rate=self.sampling_rate, num_channels=1)

    def __call__(self, example: dict) -> dict:
        if not example["target_text"]:
            return self.dropped(EMPTY_TRANSCRIPT)
        waveform = self.read_waveform(example[self.audio_column])
        if waveform is None:
            return self.dropped(UNREADABLE_AUDIO)
        duration = len(waveform) / self.sampling_rate
        if len(waveform) == 0:
            return self.dropped(EMPTY_AUDIO)
        if duration < self.min_seconds:
            return self.dropped(TOO_SHORT, duration)
        if duration > self.max_seconds:
            return self.dropped(TOO_LONG, duration)
        try:
            inputs = self.feature_extractor(waveform, sampling_rate=self.sampling_rate)[self.input_name][0]
        except Exception as error:  # e.g. a clip shorter than one 25 ms log-mel window
            logger.warning(f"Dropping clip {self.where(example[self.audio_column])}: {error}")
            return self.dropped(NO_FEATURES, duration)
        return {
            self.input_name: inputs,
            "labels": self.tokenizer(example["target_text"]).input_ids,
            # In the model's input units (samples, or feature frames): what
            # --train_sampling_strategy group_by_length sorts by, and what the
            # output-frame count is computed from.
            self.length_column: len(inputs),
            "duration": duration,
            "drop_reason": "",
        }

    def read_waveform(self, audio) -> np.ndarray | None:
        """The clip as 1-D float samples at the model's rate, or None when it cannot be read."""
        try:
            decoded = audio
            if isinstance(audio, dict) and "array" not in audio:  # undecoded: path and/or bytes
                decoded = self.decoder.decode_example(audio)
            return np.asarray(decoded["array"], dtype=np.float32).reshape(-1)
        except Exception as error:  # decoders raise many types (RuntimeError, OSError, ValueError...)
            logger.warning(f"Dropping unreadable clip {self.where(audio)}: {error}")
            return None

    @staticmethod
    def where(audio) -> str:
        path = audio.get("path") if isinstance(audio, dict) else None
        return path or "(in-memory audio)"

    def dropped(self, reason: str, duration: float = 0.0) -> dict:
        return {self.input_name: None, "labels": None, self.length_column: 0,
                "duration": duration, "drop_reason": reason}


def required_frames(labels: list[int]) -> int:
    """CTC frames a label sequence needs: one per label, plus a blank between two equal
    neighbouring labels (the "l l" of a doubled letter), which would otherwise merge."""
    return len(labels) + sum(1 for left, right in zip(labels, labels[1:]) if left == right)


def drop_unusable_clips(dataset, model, length_column: str) -> tuple[datasets.Dataset, Counter]:
    """Keeps the clips `ClipPreparer` accepted whose labels fit the model's output frames;
    returns them and the number dropped for each reason."""
    reasons = list(dataset["drop_reason"])
    input_lengths = torch.tensor(dataset[length_column], dtype=torch.long)
    # The model's own arithmetic: conv strides for wav2vec2, feature frames (and adapter
    # strides, if any) for Wav2Vec2-BERT.
    output_frames = model._get_feat_extract_output_lengths(input_lengths).tolist()
    for index, labels in enumerate(dataset["labels"]):
        if not reasons[index] and required_frames(labels) > output_frames[index]:
            reasons[index] = TOO_MANY_LABELS
    kept = [index for index, reason in enumerate(reasons) if not reason]
    counts = Counter(reason for reason in reasons if reason)
    return dataset.select(kept).remove_columns("drop_reason"), counts


def log_drop_table(counts: dict[str, Counter], splits: dict[str, datasets.Dataset]) -> None:
    width = max(len(reason) for reason in DROP_REASONS)
    header = "clips".ljust(width) + "".join(f"  {name:>10}" for name in counts)
    rows = [reason.ljust(width) + "".join(f"  {counts[name][reason]:>10}" for name in counts)
            for reason in DROP_REASONS]
    rows.append("kept".ljust(width) + "".join(f"  {len(splits[name]):>10}" for name in counts))
    hours = {name: sum(splits[name]["duration"]) / 3600 for name in counts}
    rows.append("hours kept".ljust(width) + "".join(f"  {hours[name]:>10.2f}" for name in counts))
    logger.info("Clips dropped, by reason:\n" + "\n".join([header, *rows]))


def prepare_split(dataset, name: str, preparer: ClipPreparer, model, features, data_args, training_args):
    with training_args.main_process_first(desc=f"preparing {name}"):
        prepared = dataset.map(
            preparer,
            remove_columns=dataset.column_names,
            features=features,
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
            desc=f"preparing {name} audio",
        )
    return drop_unusable_clips(prepared, model, preparer.length_column)


@dataclass
class DataCollatorCTCWithPadding:
    """Pads a batch of inputs with the feature extractor and the labels with -100, which the
    CTC loss ignores, so padding never counts as a label."""

    feature_extractor: object
    tokenizer: Wav2Vec2CTCTokenizer
    input_name: str

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        inputs = [{self.input_name: example[self.input_name]} for example in examples]
        labels = [{"input_ids": example["labels"]} for example in examples]
        batch = self.feature_extractor.pad(inputs, padding=True, return_tensors="pt")
        padded = self.tokenizer.pad(labels, padding=True, return_tensors="pt")
        batch["labels"] = padded["input_ids"].masked_fill(padded["attention_mask"].ne(1), -100)
        return batch


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


def word_error_rate(references: list[str], predictions: list[str], normalizer) -> float:
    # Words as the profile defines them (space, fugashi morphemes or single characters).
    return jiwer.wer([normalizer.words_joined(text) for text in references],
                     [normalizer.words_joined(text) for text in predictions])


def character_error_rate(references: list[str], predictions: list[str], normalizer) -> float:
    return jiwer.cer(references, predictions)


METRIC_FUNCTIONS = {"wer": word_error_rate, "cer": character_error_rate}


def greedy_ids(logits, labels) -> torch.Tensor:
    """The best label of each frame: evaluation then gathers one id per frame for the whole
    eval set instead of a score for every label."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def metrics_computer(tokenizer: Wav2Vec2CTCTokenizer, normalizer, metric_names: list[str]):
    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        # -100 marks padding (labels) and the Trainer's padding across batches (predictions).
        pad = tokenizer.pad_token_id
        predicted_ids = np.where(prediction.predictions == -100, pad, prediction.predictions)
        label_ids = np.where(prediction.label_ids == -100, pad, prediction.label_ids)
        predictions = tokenizer.batch_decode(predicted_ids)
        # Labels are the transcript itself: repeated letters must not be merged.
        references = tokenizer.batch_decode(label_ids, group_tokens=False)
        return {name: METRIC_FUNCTIONS[name](references, predictions, normalizer) for name in metric_names}

    return compute_metrics


def choose_metrics(data_args: DataTrainingArguments, normalizer) -> list[str]:
    names = data_args.eval_metrics or normalizer.profile.get("metrics") or list(SUPPORTED_METRICS)
    unknown = [name for name in names if name not in SUPPORTED_METRICS]
    if unknown:
        raise SystemExit(f"error: unknown --eval_metrics {' '.join(unknown)} "
                         f"(known: {' '.join(SUPPORTED_METRICS)})")
    return names


def warn_about_unknown_eval_characters(dataset, tokenizer: Wav2Vec2CTCTokenizer) -> None:
    """Eval letters outside the vocabulary become [UNK] labels the model cannot learn."""
    unknown = sum(1 for labels in dataset["labels"] if tokenizer.unk_token_id in labels)
    if unknown:
        logger.warning(f"{unknown} evaluation transcripts hold characters outside the vocabulary; "
                       "they count as errors.")


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def card_hyperparameters(args: TrainingArguments) -> dict:
    """The hyperparameter list a model card shows, in the order Trainer-made cards use;
    `ctcforge card` reads it from training_hyperparameters.json."""
    world_size = max(args.world_size, 1)
    values = {
        "learning_rate": args.learning_rate,
        "train_batch_size": args.per_device_train_batch_size,
        "eval_batch_size": args.per_device_eval_batch_size,
        "seed": args.seed,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size,
        "optimizer": f"{getattr(args.optim, 'value', args.optim)} with betas=({args.adam_beta1},{args.adam_beta2}) and epsilon={args.adam_epsilon}",
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
    }
    if args.warmup_steps:
        values["lr_scheduler_warmup_steps"] = args.warmup_steps
    if args.max_steps > 0:
        values["training_steps"] = args.max_steps
    else:
        values["num_epochs"] = args.num_train_epochs
    if args.fp16 or args.bf16:
        values["mixed_precision_training"] = "Native AMP" if args.fp16 else "bf16"
    return values


def main() -> None:
    model_args, data_args, training_args = parse_arguments()
    setup_logging(training_args)
    training_args = apply_legacy_flags(data_args, training_args)
    logger.info(f"Training/evaluation parameters {training_args}")
    output_dir = Path(training_args.output_dir)
    checkpoint = checkpoint_to_resume(training_args, data_args.overwrite_output_dir)

    # Before anything random: a model without weights is initialised from this seed.
    set_seed(training_args.seed)

    normalizer = load_normalizer(data_args.chars_to_ignore)
    metric_names = choose_metrics(data_args, normalizer)
    feature_extractor = AutoFeatureExtractor.from_pretrained(
        model_args.model_name_or_path, cache_dir=model_args.cache_dir
    )
    input_name = feature_extractor.model_input_names[0]  # input_values or input_features
    length_column = training_args.length_column_name

    raw_splits = {}
    if training_args.do_train:
        raw_splits["train"] = load_split(data_args, data_args.train_split_name,
                                         feature_extractor.sampling_rate, data_args.max_train_samples)
    if training_args.do_eval:
        raw_splits["eval"] = load_split(data_args, data_args.eval_split_name,
                                        feature_extractor.sampling_rate, data_args.max_eval_samples)
    raw_splits = {name: add_normalised_text(split, data_args, normalizer, training_args)
                  for name, split in raw_splits.items()}

    training_characters = None
    if "train" in raw_splits:
        training_characters = set("".join(raw_splits["train"]["target_text"]))
    # A checkpoint's own folder holds no vocab.json; the run folder above it does.
    resuming_in = Path(checkpoint).parent if checkpoint else None
    vocab = choose_vocabulary(model_args, data_args, training_characters, resuming_in)
    warn_about_unknown_training_characters(vocab, training_characters, data_args)
    with training_args.main_process_first(desc="writing vocab.json"):
        tokenizer = create_tokenizer(vocab, output_dir, data_args)

    config = AutoConfig.from_pretrained(model_args.model_name_or_path, cache_dir=model_args.cache_dir)
    configure_for_ctc(config, model_args, tokenizer)
    model, randomly_initialised = load_model(model_args, config)
    if model.main_input_name != input_name:
        raise SystemExit(f"error: the model reads {model.main_input_name} but the feature extractor "
                         f"writes {input_name}: config.json and preprocessor_config.json do not match.")
    if model.config.vocab_size != len(tokenizer):
        raise SystemExit(
            f"error: the model has {model.config.vocab_size} outputs for {len(tokenizer)} labels"
        )
    if model_args.freeze_feature_encoder:
        freeze_feature_encoder(model, randomly_initialised)

    preparer = ClipPreparer(feature_extractor, tokenizer, input_name, length_column,
                            data_args.audio_column_name, data_args)
    features = prepared_features(feature_extractor, input_name, length_column)
    splits, dropped = {}, {}
    for name, raw in raw_splits.items():
        splits[name], dropped[name] = prepare_split(
            raw, name, preparer, model, features, data_args, training_args
        )
    log_drop_table(dropped, splits)
    for name, split in splits.items():
        if len(split) == 0:
            raise SystemExit(f"error: no usable clips left in the {name} split (see the table above)")
    if "eval" in splits:
        warn_about_unknown_eval_characters(splits["eval"], tokenizer)

    if data_args.preprocessing_only:
        logger.info("Data preprocessing finished (--preprocessing_only).")
        return

    # Saved before training so that output_dir is a loadable processor even if the run
    # stops early; the model follows at the end.
    if training_args.should_save:
        feature_extractor.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)

    trainer = Trainer(
        model=model,
        args=training_args,
        data_collator=DataCollatorCTCWithPadding(feature_extractor, tokenizer, input_name),
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("eval"),
        # Checkpoints then carry preprocessor_config.json, as upstream's do.
        processing_class=feature_extractor,
        compute_metrics=metrics_computer(tokenizer, normalizer, metric_names),
        preprocess_logits_for_metrics=greedy_ids,
    )

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        metrics = {**result.metrics, "train_samples": len(splits["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if training_args.should_save:
            (output_dir / "training_hyperparameters.json").write_text(
                json.dumps(card_hyperparameters(training_args), indent=2) + "\n", encoding="utf-8")

    if training_args.do_eval:
        metrics = {**trainer.evaluate(), "eval_samples": len(splits["eval"])}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    main()
