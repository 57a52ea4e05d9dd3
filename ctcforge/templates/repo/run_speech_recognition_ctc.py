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
- `--model_name_or_path ./` in a repo that holds no weights yet fine-tunes the base model
  the repo was stamped for, which `base_model.json` records (a Hub id, a local folder, or
  the `tiny` architecture, which alone starts from random weights); once the repo holds
  weights, training continues from them. `--from_scratch` asks for random weights. The log
  says which tensors were loaded, which are new and which of the checkpoint's were dropped.
- `--fp16` on a machine without a CUDA GPU trains in bf16 instead, saying so; `--push_to_hub`
  without a Hub login stops at once, pointing to `ctcforge push`.
- `--lr_scheduler_type tristage` (with `--lr_scheduler_ratios`) is fairseq's wav2vec 2.0
  schedule: warm up, hold, then decay exponentially.
- `--speed_perturbation 0.9 1.0 1.1` plays each training clip at a randomly drawn speed
  each time it is batched.
- `--group_by_length` sorts by the lengths measured while preparing the data, instead of
  reading every clip again when training starts.
- `--max_train_minutes` trains for a wall-clock budget: the learning-rate schedule runs
  on the share of the budget used (or of --max_steps, whichever is further along), and
  training stops, saving the model, when the time is up.

Example:
    python run_speech_recognition_ctc.py --model_name_or_path ./ \
        --dataset_name /data/cv-corpus-17.0 --dataset_config_name hy-AM \
        --output_dir ./ --do_train --do_eval --max_steps 2000
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import json
import logging
import math
import os
import random
import re
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import torch
import torchaudio
import transformers
from safetensors import safe_open
from torch.optim.lr_scheduler import LambdaLR
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    EvalPrediction,
    HfArgumentParser,
    SchedulerType,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    Wav2Vec2CTCTokenizer,
    set_seed,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import ctc_frames
import error_rates
import speech_data
import starting_weights
import text_normalizer

logger = logging.getLogger(__name__)

TRISTAGE = "tristage"
# fairseq's tri_stage defaults: warm up from 1% of the learning rate, decay to 5% of it.
TRISTAGE_INIT_LR_SCALE = 0.01
TRISTAGE_FINAL_LR_SCALE = 0.05
# The column that holds a training clip's audio when --speed_perturbation is on.
WAVEFORM_COLUMN = "waveform"
# The repo this script belongs to, and the record of the last training run it keeps there.
REPO_DIR = Path(__file__).resolve().parent
TRAINING_RUN_FILE = "training_run.json"


@dataclass
class ModelArguments:
    """Which model to start from, and the regularisation settings written into its config."""

    model_name_or_path: str = field(
        metadata={
            "help": "This repo (./): its weights once trained, else the base model base_model.json "
            "names. Or any model folder, or a Hub id (from the Hub or the local cache)."
        }
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "Start from random weights, whatever the model folder holds or names."},
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
    speed_perturbation: list[float] | None = field(
        default=None,
        metadata={
            "help": "Speed factors such as 0.9 1.0 1.1: each time a training clip is batched it is "
            "played at one of them, drawn at random (faster is shorter and higher). Off by default. "
            "The training clips are then kept as audio and turned into features batch by batch."
        },
    )


@dataclass
class SpeechTrainingArguments(TrainingArguments):
    """TrainingArguments plus fairseq's tristage learning-rate schedule, which the wav2vec 2.0
    recipes (and this repo's hy-AM seed) use and transformers does not have."""

    # Redeclared only to add "tristage" to the names TrainingArguments accepts.
    lr_scheduler_type: str = field(
        default="linear",
        metadata={
            "help": "The learning rate schedule: one of transformers' SchedulerType names, or tristage "
            "(see --lr_scheduler_ratios).",
            "choices": [scheduler.value for scheduler in SchedulerType] + [TRISTAGE],
        },
    )
    lr_scheduler_ratios: list[float] = field(
        default_factory=lambda: [0.1, 0.4, 0.5],
        metadata={
            "help": "tristage only: the shares of the training steps spent warming up (linearly, from "
            "--init_lr_scale times the learning rate), holding the learning rate, and decaying "
            "(exponentially, to --final_lr_scale times it). They add up to 1."
        },
    )
    init_lr_scale: float = field(
        default=TRISTAGE_INIT_LR_SCALE,
        metadata={"help": "tristage only: the learning rate at step 0, as a fraction of --learning_rate."},
    )
    final_lr_scale: float = field(
        default=TRISTAGE_FINAL_LR_SCALE,
        metadata={"help": "tristage only: the learning rate at the end, as a fraction of --learning_rate."},
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Stop training after this many minutes of wall-clock time (evaluations included) "
            "and save the model. The learning-rate schedule then follows the share of this budget "
            "used, so it warms up and decays within it; --max_steps (or the epochs) stays an upper "
            "bound. Give --warmup_steps as a fraction of the run (e.g. 0.1) with it."
        },
    )

    def __post_init__(self):
        self.choose_precision_for_the_machine()
        tristage = self.lr_scheduler_type == TRISTAGE
        if tristage:
            # TrainingArguments turns the name into a SchedulerType, which has no tristage: it
            # checks everything else against a stand-in, and gets the real name back after.
            self.lr_scheduler_type = SchedulerType.CONSTANT.value
        super().__post_init__()
        if self.max_train_minutes is not None:
            if self.max_train_minutes <= 0:
                raise ValueError("--max_train_minutes must be more than 0")
            if not tristage and self.warmup_steps >= 1:
                # A warm-up counted in steps cannot follow a clock: the number of steps the
                # budget allows is unknown until the run ends.
                raise ValueError("--max_train_minutes schedules by time: give --warmup_steps as a "
                                 f"fraction of the run (e.g. 0.1), not {self.warmup_steps} steps")
        if not tristage:
            return
        self.lr_scheduler_type = TRISTAGE
        if len(self.lr_scheduler_ratios) != 3 or min(self.lr_scheduler_ratios) < 0:
            raise ValueError("--lr_scheduler_ratios takes three shares: warm-up, hold and decay")
        if abs(sum(self.lr_scheduler_ratios) - 1) > 1e-6:
            raise ValueError(f"--lr_scheduler_ratios {self.lr_scheduler_ratios} must add up to 1")
        if not (0 <= self.init_lr_scale <= 1 and 0 < self.final_lr_scale <= 1):
            raise ValueError("--init_lr_scale must be in [0, 1] and --final_lr_scale in (0, 1]")

    def choose_precision_for_the_machine(self) -> None:
        """GPU command lines on a machine without an accelerator: --fp16 needs CUDA, so it
        becomes bf16, which a CPU runs; and --bf16 alone would make TrainingArguments ask
        for --use_cpu, which is what it then means."""
        if self.use_cpu or torch.accelerator.is_available() or not (self.fp16 or self.bf16):
            return
        if self.fp16:
            # Printed, not logged: this runs while the arguments are parsed, before logging is set up.
            print("warning: --fp16 needs a CUDA GPU and none is visible; training in bf16 on the CPU "
                  "instead (drop --fp16 to train in fp32)", file=sys.stderr)
            self.fp16, self.bf16 = False, True
        self.use_cpu = True


# ---------------------------------------------------------------------------------------
# Arguments and logging
# ---------------------------------------------------------------------------------------


def parse_arguments() -> tuple[ModelArguments, DataTrainingArguments, SpeechTrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, SpeechTrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        # Like upstream: a single JSON file holds all the arguments.
        return parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
    return parser.parse_args_into_dataclasses()


def resolve_training_arguments(
    data_args: DataTrainingArguments, training_args: SpeechTrainingArguments
) -> SpeechTrainingArguments:
    """Maps the old flags onto today's TrainingArguments fields, and sets the one field this
    script depends on.

    `dataclasses.replace` builds a new TrainingArguments, so its own checks and derived
    defaults (eval_steps falling back to logging_steps, say) run on the mapped values.
    """
    changes = {}
    if data_args.evaluation_strategy is not None:
        changes["eval_strategy"] = data_args.evaluation_strategy
    if data_args.group_by_length:
        changes["train_sampling_strategy"] = "group_by_length"
    if data_args.use_auth_token:
        logger.info("--use_auth_token ignored: a Hub login comes from `hf auth login` or HF_TOKEN.")
    if training_args.push_to_hub:
        problem = hub_login_problem()
        if problem:
            # The Trainer would otherwise fail creating the Hub repo, in a traceback.
            raise SystemExit(f"error: --push_to_hub needs the Hub, and {problem}; log in with "
                             "`hf auth login`, or drop --push_to_hub and upload the trained repo "
                             "later with `ctcforge push REPO --repo-id ORG/NAME`")
    if data_args.phoneme_language:
        logger.info("--phoneme_language ignored: this repo's model writes characters, not phonemes.")
    if training_args.lr_scheduler_type == TRISTAGE and training_args.warmup_steps:
        logger.warning("--warmup_steps is ignored: tristage warms up for the first of its "
                       "--lr_scheduler_ratios instead.")
    # The collator picks the model's inputs out of each example itself. Left on, the
    # Trainer would strip every column the model's forward() does not name before batching:
    # the length column that group_by_length sorts by (it would then read every clip to
    # measure it again) and the audio kept for --speed_perturbation.
    if training_args.remove_unused_columns:
        changes["remove_unused_columns"] = False
    return dataclasses.replace(training_args, **changes) if changes else training_args


def hub_login_problem() -> str | None:
    """Why the Hub cannot be written to from here, or None when a login is present."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if huggingface_hub.get_token() is None:
        return "no Hub token was found"
    return None


def setup_logging(training_args: TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    # This script's own messages (the dropped-clip table, what the weights started from)
    # are worth reading on the main process; the libraries follow --log_level.
    for module in (__name__, starting_weights.__name__, speech_data.__name__):
        logging.getLogger(module).setLevel(logging.INFO if training_args.should_log else logging.WARNING)
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
    if starting_weights.has_weights(output_dir):
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
    vocab: dict[str, int], output_dir: Path, data_args: DataTrainingArguments, write: bool = True
) -> Wav2Vec2CTCTokenizer:
    """A CTC tokenizer over exactly the labels of `vocab`, saved as output_dir/vocab.json
    (by the process that `write`s it; the others read it)."""
    missing = missing_special_tokens(vocab, data_args)
    if missing:
        raise SystemExit(
            f"error: the vocabulary has no {' '.join(missing)}; set --word_delimiter_token, "
            "--unk_token and --pad_token to the special tokens it uses."
        )
    vocab_file = output_dir / "vocab.json"
    if write:
        output_dir.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed into place: with output_dir ./ this is the model folder's
        # vocab.json, which the other processes of a distributed run may be reading.
        partial_file = output_dir / f".vocab.json.{os.getpid()}"
        partial_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(partial_file, vocab_file)
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
# Learning-rate schedule and Trainer
# ---------------------------------------------------------------------------------------


def tristage_lr_scale(step: int, warmup_steps: int, hold_steps: int, decay_steps: int,
                      init_lr_scale: float, final_lr_scale: float) -> float:
    """The learning rate before optimizer step `step`, as a fraction of the peak, following
    fairseq's `tri_stage`: a linear warm-up from `init_lr_scale` to 1, a hold at 1, an
    exponential decay to `final_lr_scale`, and `final_lr_scale` for any steps left over."""
    if step < warmup_steps:
        return init_lr_scale + (1 - init_lr_scale) * step / warmup_steps
    step -= warmup_steps
    if step < hold_steps:
        return 1.0
    step -= hold_steps
    if step < decay_steps:
        # exp(-k * step), with k chosen so that the decay ends exactly at final_lr_scale.
        return final_lr_scale ** (step / decay_steps)
    return final_lr_scale


def tristage_schedule(
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    ratios: list[float],
    init_lr_scale: float = TRISTAGE_INIT_LR_SCALE,
    final_lr_scale: float = TRISTAGE_FINAL_LR_SCALE,
) -> LambdaLR:
    """fairseq's tristage schedule over `num_training_steps`, split in the `ratios` shares
    (warm-up, hold, decay), as a LambdaLR so checkpoints save and restore it like any other."""
    # Floored, as fairseq does, but forgiving float noise: 100 * 0.29 is 28.999999999999996.
    warmup_steps, hold_steps, decay_steps = (
        math.floor(num_training_steps * ratio + 1e-6) for ratio in ratios
    )
    lr_scale = functools.partial(
        tristage_lr_scale,
        warmup_steps=warmup_steps,
        hold_steps=hold_steps,
        decay_steps=decay_steps,
        init_lr_scale=init_lr_scale,
        final_lr_scale=final_lr_scale,
    )
    return LambdaLR(optimizer, lr_scale)


def column_values(dataset: datasets.Dataset, column: str) -> list:
    """One column as a plain list, read from the Arrow table alone.

    `dataset[column]` is a lazy Column: each `[i]` is a new table lookup, and a length
    sampler looks lengths up over and over while sorting. Sliced whole, without a format
    (and so without any transform set on the dataset), it is one read of that column alone.
    """
    return dataset.with_format(None)[column][:]


class TrainingClock(TrainerCallback):
    """The wall-clock budget of one run (--max_train_minutes): it tells the schedule how much
    of the budget is used, and stops training when all of it is."""

    def __init__(self, minutes: float):
        self.budget_s = minutes * 60
        self.started: float | None = None

    def used(self) -> float:
        """The share of the budget used so far, from 0 to 1 (0 before training starts)."""
        if self.started is None:
            return 0.0
        return min(1.0, (time.monotonic() - self.started) / self.budget_s)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.used() >= 1.0 and not control.should_training_stop:
            logger.info(f"--max_train_minutes {self.budget_s / 60:g} reached after {state.global_step} steps")
            control.should_training_stop = True
        return control


def follow_clock(lr_lambda, clock: TrainingClock, num_training_steps: int):
    """`lr_lambda` driven by whichever is further along: the optimizer steps taken, or the
    share of the time budget used, counted in steps of a `num_training_steps` run."""

    def scale(step: int) -> float:
        return lr_lambda(max(step, int(clock.used() * num_training_steps)))

    return scale


class CTCTrainer(Trainer):
    """The Trainer with two additions: the tristage schedule, and batches grouped by the
    lengths measured while preparing the data.

    The Trainer's own group_by_length reads the length column through a lazy Column, one
    table lookup per comparison while it sorts, or without that column reads every clip's
    features to measure them; on a large training set either costs minutes before the first
    step.
    """

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        if self.lr_scheduler is None and self.args.lr_scheduler_type == TRISTAGE:
            self.lr_scheduler = tristage_schedule(
                optimizer if optimizer is not None else self.optimizer,
                num_training_steps,
                self.args.lr_scheduler_ratios,
                self.args.init_lr_scale,
                self.args.final_lr_scale,
            )
            # As the base class marks the schedules it makes: a second train() call then
            # builds a new one for its own number of steps.
            self._created_lr_scheduler = True
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        clock = self.training_clock()
        if clock is not None and not getattr(scheduler, "follows_clock", False):
            if not isinstance(scheduler, LambdaLR):
                raise SystemExit(f"error: --max_train_minutes needs a step-based schedule, not "
                                 f"{self.args.lr_scheduler_type}")
            scheduler.lr_lambdas = [follow_clock(f, clock, num_training_steps) for f in scheduler.lr_lambdas]
            scheduler.follows_clock = True
        return scheduler

    def training_clock(self) -> TrainingClock | None:
        return next((c for c in self.callback_handler.callbacks if isinstance(c, TrainingClock)), None)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = self.precomputed_lengths(dataset)
        if lengths is None:
            return super()._get_train_sampler(train_dataset)
        # The batch size and the randomness (torch's global generator) are the Trainer's own.
        batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(batch_size, lengths=lengths)

    def _get_eval_sampler(self, eval_dataset):
        lengths = self.precomputed_lengths(eval_dataset)
        if lengths is None:
            return super()._get_eval_sampler(eval_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthGroupedSampler(self.args.eval_batch_size, lengths=lengths,
                                    generator=torch.Generator().manual_seed(seed))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The Trainer's prediction step, with each clip's best label per frame instead of
        its logits, and the frames computed from padding marked -100 (blank).

        Padding is masked inside the encoder, but the frames it produces still get a label:
        left in, they would add letters after the end of every shorter clip in a batch, as
        if the model had heard them (eval.py cuts them off the same way)."""
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if logits is None:
            return loss, logits, labels
        if isinstance(logits, tuple):
            logits = logits[0]
        ids = logits.argmax(dim=-1)
        attention_mask = inputs.get("attention_mask")
        if attention_mask is not None:
            frames = self.accelerator.unwrap_model(model)._get_feat_extract_output_lengths(attention_mask.sum(-1))
            positions = torch.arange(ids.shape[1], device=ids.device)
            ids = ids.masked_fill(positions[None, :] >= frames.to(ids.device)[:, None], -100)
        return loss, ids, labels

    def precomputed_lengths(self, dataset) -> list[int] | None:
        """The length column as a list when batches are grouped by length; None otherwise,
        or when there is no such column (the Trainer then measures the clips itself)."""
        if (
            self.args.train_sampling_strategy != "group_by_length"
            or not isinstance(dataset, datasets.Dataset)
            or self.args.length_column_name not in dataset.column_names
        ):
            return None
        return column_values(dataset, self.args.length_column_name)


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


def prepared_features(preparer: ClipPreparer) -> datasets.Features:
    """The column types `preparer` writes. Given up front because a dropped clip has no
    inputs, and `datasets` cannot guess a type from a batch of missing values."""
    if preparer.keep_waveform:
        inputs = datasets.List(datasets.Value("float32"))
    else:
        feature_extractor = preparer.feature_extractor
        probe = feature_extractor(np.zeros(feature_extractor.sampling_rate, dtype=np.float32),
                                  sampling_rate=feature_extractor.sampling_rate)[preparer.input_name][0]
        inputs = datasets.Value("float32")
        for _ in range(np.ndim(probe)):  # 1 for raw waveforms, 2 for log-mel frames
            inputs = datasets.List(inputs)
    return datasets.Features(
        {
            preparer.output_column: inputs,
            "labels": datasets.List(datasets.Value("int32")),
            preparer.length_column: datasets.Value("int32"),
            "duration": datasets.Value("float32"),
            "drop_reason": datasets.Value("string"),
        }
    )


class ClipPreparer:
    """Turns one example into model inputs and labels, or names the reason to drop it.

    With `keep_waveform` (training clips under --speed_perturbation) the clip's samples at
    the model's rate are kept instead of its features: the features of a clip played at a
    new speed can only be computed from its audio, batch by batch. The features are still
    computed here once, to drop the clips they fail on and to measure the length.
    """

    def __init__(self, feature_extractor, tokenizer, input_name: str, length_column: str,
                 audio_column: str, data_args: DataTrainingArguments, keep_waveform: bool = False):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.input_name = input_name
        self.length_column = length_column
        self.keep_waveform = keep_waveform
        self.output_column = WAVEFORM_COLUMN if keep_waveform else input_name
        self.audio_column = audio_column
        self.min_seconds = data_args.min_duration_in_seconds
        self.max_seconds = data_args.max_duration_in_seconds
        self.sampling_rate = feature_extractor.sampling_rate

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
            self.output_column: waveform if self.keep_waveform else inputs,
            "labels": self.tokenizer(example["target_text"]).input_ids,
            # In the model's input units (samples, or feature frames), at the clip's own
            # speed: what --train_sampling_strategy group_by_length sorts by, and what the
            # output-frame count is computed from.
            self.length_column: len(inputs),
            "duration": duration,
            "drop_reason": "",
        }

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
        return {self.output_column: None, "labels": None, self.length_column: 0,
                "duration": duration, "drop_reason": reason}


def drop_unusable_clips(dataset, model, length_column: str,
                        fastest_speed: float = 1.0) -> tuple[datasets.Dataset, Counter]:
    """Keeps the clips `ClipPreparer` accepted whose labels fit the model's output frames,
    even when played at `fastest_speed`; returns them and the number dropped for each reason."""
    reasons = list(dataset["drop_reason"])
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


def prepare_split(dataset, name: str, preparer: ClipPreparer, model, data_args, training_args,
                  fastest_speed: float = 1.0):
    with training_args.main_process_first(desc=f"preparing {name}"):
        prepared = dataset.map(
            preparer,
            remove_columns=dataset.column_names,
            features=prepared_features(preparer),
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
            desc=f"preparing {name} audio",
        )
    return drop_unusable_clips(prepared, model, preparer.length_column, fastest_speed)


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
    the other columns in, see `resolve_training_arguments`). A clip kept as audio (training
    under --speed_perturbation) is first played at a random speed and turned into features.
    """

    feature_extractor: object
    tokenizer: Wav2Vec2CTCTokenizer
    input_name: str
    speed_perturbation: SpeedPerturbation | None = None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        inputs = [{self.input_name: self.model_inputs(example)} for example in examples]
        labels = [{"input_ids": example["labels"]} for example in examples]
        batch = self.feature_extractor.pad(inputs, padding=True, return_tensors="pt")
        padded = self.tokenizer.pad(labels, padding=True, return_tensors="pt")
        batch["labels"] = padded["input_ids"].masked_fill(padded["attention_mask"].ne(1), -100)
        return batch

    def model_inputs(self, example: dict):
        if WAVEFORM_COLUMN not in example:
            return example[self.input_name]  # computed while preparing the data
        waveform = np.asarray(example[WAVEFORM_COLUMN], dtype=np.float32)
        if self.speed_perturbation is not None:
            waveform = self.speed_perturbation(waveform)
        sampling_rate = self.feature_extractor.sampling_rate
        return self.feature_extractor(waveform, sampling_rate=sampling_rate)[self.input_name][0]


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


def metrics_computer(tokenizer: Wav2Vec2CTCTokenizer, normalizer, metric_names: list[str]):
    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        # -100 marks padding (labels) and the Trainer's padding across batches (predictions).
        pad = tokenizer.pad_token_id
        predicted_ids = np.where(prediction.predictions == -100, pad, prediction.predictions)
        label_ids = np.where(prediction.label_ids == -100, pad, prediction.label_ids)
        predictions = tokenizer.batch_decode(predicted_ids)
        # Labels are the transcript itself: repeated letters must not be merged.
        references = tokenizer.batch_decode(label_ids, group_tokens=False)
        return {name: error_rates.METRICS[name](references, predictions, normalizer) for name in metric_names}

    return compute_metrics


def choose_metrics(data_args: DataTrainingArguments, normalizer) -> list[str]:
    names = data_args.eval_metrics or normalizer.profile.get("metrics") or list(error_rates.METRICS)
    unknown = [name for name in names if name not in error_rates.METRICS]
    if unknown:
        raise SystemExit(f"error: unknown --eval_metrics {' '.join(unknown)} "
                         f"(known: {' '.join(error_rates.METRICS)})")
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


def card_hyperparameters(
    args: SpeechTrainingArguments, speed_perturbation: list[float] | None = None, steps_trained: int | None = None
) -> dict:
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
    if args.lr_scheduler_type == TRISTAGE:
        # Its warm-up is the first ratio; --warmup_steps does not apply.
        values["lr_scheduler_ratios"] = list(args.lr_scheduler_ratios)
        # Shown only when not fairseq's defaults, which is what a tristage card implies.
        if args.init_lr_scale != TRISTAGE_INIT_LR_SCALE:
            values["lr_scheduler_init_lr_scale"] = args.init_lr_scale
        if args.final_lr_scale != TRISTAGE_FINAL_LR_SCALE:
            values["lr_scheduler_final_lr_scale"] = args.final_lr_scale
    elif args.warmup_steps:
        values["lr_scheduler_warmup_steps"] = args.warmup_steps
    if args.max_train_minutes is not None:
        values["training_time_budget_minutes"] = args.max_train_minutes
        values["training_steps"] = steps_trained
    elif args.max_steps > 0:
        values["training_steps"] = args.max_steps
    else:
        values["num_epochs"] = args.num_train_epochs
    if args.fp16 or args.bf16:
        values["mixed_precision_training"] = "Native AMP" if args.fp16 else "bf16"
    if speed_perturbation:
        values["speed_perturbation"] = list(speed_perturbation)
    return values


def training_run_record(start: starting_weights.StartingPoint, output_dir: Path, steps: int) -> dict:
    """What `ctcforge card` shows as the command that was really run, and where its model is."""
    versions = {"Transformers": transformers.__version__, "Pytorch": torch.__version__,
                "Datasets": datasets.__version__}
    try:
        versions["Tokenizers"] = importlib.metadata.version("tokenizers")
    except importlib.metadata.PackageNotFoundError:
        pass
    return {
        "command": shlex.join(["python", Path(sys.argv[0]).name, *sys.argv[1:]]),
        "output_dir": str(output_dir.resolve()),
        "started_from": start.description,
        "steps": steps,
        "framework_versions": versions,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: dict) -> None:
    """Written aside and renamed into place, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def main() -> None:
    model_args, data_args, training_args = parse_arguments()
    setup_logging(training_args)
    training_args = resolve_training_arguments(data_args, training_args)
    logger.info(f"Training/evaluation parameters {training_args}")
    output_dir = Path(training_args.output_dir)
    checkpoint = checkpoint_to_resume(training_args, data_args.overwrite_output_dir)
    # Where the weights come from, checked now: a model that cannot be loaded should stop
    # the run before hours of data preparation, not after.
    try:
        start = starting_weights.starting_point(model_args.model_name_or_path, model_args.from_scratch)
        for name in {model_args.model_name_or_path, start.source} - {None}:
            starting_weights.check_reachable(name, model_args.cache_dir)
    except starting_weights.StartingWeightsError as error:
        raise SystemExit(f"error: {error}")

    # Before anything random: a model without weights is initialised from this seed.
    set_seed(training_args.seed)

    normalizer = load_normalizer(data_args.chars_to_ignore)
    metric_names = choose_metrics(data_args, normalizer)
    feature_extractor = AutoFeatureExtractor.from_pretrained(
        model_args.model_name_or_path, cache_dir=model_args.cache_dir
    )
    input_name = feature_extractor.model_input_names[0]  # input_values or input_features
    length_column = training_args.length_column_name
    speed_perturbation = None
    if data_args.speed_perturbation:
        try:
            speed_perturbation = SpeedPerturbation(data_args.speed_perturbation,
                                                   feature_extractor.sampling_rate)
        except ValueError as error:
            raise SystemExit(f"error: {error}")

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
        # One writer per machine (main_process_first lets each machine's first process go
        # first); the others then read what it wrote.
        tokenizer = create_tokenizer(vocab, output_dir, data_args,
                                     write=training_args.local_process_index == 0)

    config = AutoConfig.from_pretrained(model_args.model_name_or_path, cache_dir=model_args.cache_dir)
    configure_for_ctc(config, model_args, tokenizer)
    try:
        model = starting_weights.load_ctc_model(start, config, model_args.cache_dir)
    except starting_weights.StartingWeightsError as error:
        raise SystemExit(f"error: {error}")
    if model.main_input_name != input_name:
        raise SystemExit(f"error: the model reads {model.main_input_name} but the feature extractor "
                         f"writes {input_name}: config.json and preprocessor_config.json do not match.")
    if model.config.vocab_size != len(tokenizer):
        raise SystemExit(
            f"error: the model has {model.config.vocab_size} outputs for {len(tokenizer)} labels"
        )
    if model_args.freeze_feature_encoder:
        freeze_feature_encoder(model, randomly_initialised=not start.pretrained)

    splits, dropped = {}, {}
    for name, raw in raw_splits.items():
        # Only training clips are perturbed; they keep their audio for it.
        perturbed = name == "train" and speed_perturbation is not None
        preparer = ClipPreparer(feature_extractor, tokenizer, input_name, length_column,
                                data_args.audio_column_name, data_args, keep_waveform=perturbed)
        splits[name], dropped[name] = prepare_split(
            raw, name, preparer, model, data_args, training_args,
            fastest_speed=max(speed_perturbation.factors) if perturbed else 1.0,
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

    trainer = CTCTrainer(
        model=model,
        args=training_args,
        data_collator=DataCollatorCTCWithPadding(feature_extractor, tokenizer, input_name,
                                                 speed_perturbation),
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("eval"),
        # Checkpoints then carry preprocessor_config.json, as upstream's do.
        processing_class=feature_extractor,
        compute_metrics=metrics_computer(tokenizer, normalizer, metric_names),
        callbacks=[TrainingClock(training_args.max_train_minutes)] if training_args.max_train_minutes else None,
    )

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        metrics = {**result.metrics, "train_samples": len(splits["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if training_args.should_save:
            write_json(output_dir / "training_hyperparameters.json",
                       card_hyperparameters(training_args, data_args.speed_perturbation,
                                            trainer.state.global_step))
            # In the run folder, and in the repo too, so that ctcforge card, push and eval.py
            # find a model trained into another --output_dir.
            record = training_run_record(start, output_dir, trainer.state.global_step)
            for folder in {output_dir.resolve(), REPO_DIR}:
                write_json(folder / TRAINING_RUN_FILE, record)

    if training_args.do_eval:
        metrics = {**trainer.evaluate(), "eval_samples": len(splits["eval"])}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    main()
