#!/usr/bin/env python
"""Fine-tune (or train from scratch) this repo's CTC speech recognition model.

What is yours and what is the contract: the arguments and their defaults (the classes marked
DO ADAPT FOR YOUR USE CASE) and the steps of `main()` are yours to change; the text rules
are data, in `language_profile.json` (read by training, eval.py and the LM alike); the
files a run leaves (marked DO NOT CHANGE, written through `ctcforge_runtime/repo_files.py`)
are what eval.py, `ctcforge card` and `ctcforge push` read. The machinery lives in
`ctcforge_runtime/`, which `ctcforge update` replaces, merging any edit of yours.

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
  skipping one that was cut off while being written; a disk that fills up while saving
  stops the run in one line saying how much a checkpoint needs.
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
- On the CPU, torch computes with as many threads as other jobs leave cores free
  (`cpu_threads`; `--torch_threads` to choose): on a shared machine, threads that wait
  for busy cores slow training several times over.
- `--features_on_the_fly` (on by default for large splits) prepares only a manifest and
  computes the features batch by batch, in the DataLoader workers; see `features_on_the_fly`.
- `--max_train_minutes` trains for a wall-clock budget: the learning-rate schedule runs
  on the share of the budget used (or of --max_steps, whichever is further along), and
  training stops, saving the model, when the time is up.
- A model with language adapters (`adapter_attn_dim` in config.json: facebook/mms-1b-all)
  trains only the adapter layers and output layer of `--target_language` (by default the
  profile's ISO 639-3 code), the rest frozen, and saves them as
  `adapter.<language>.safetensors` (`adapters`). The command line of upstream's
  `run_speech_recognition_ctc_adapter.py` runs too.

main() reads top to bottom like upstream's. The machinery is in the runtime package beside
this script (`ctcforge_runtime/`), a module per concern: `vocabulary` (the label set and tokenizer),
`clip_preparation` (decoding, the filters that drop clips and their table, speed
perturbation, the collator), `features_on_the_fly` (when the clips are featurised batch
by batch, and the count of those that fail then), `training_schedule` (tristage, the time
budget), `checkpoints` (which checkpoint to resume, a full disk while saving), `cpu_threads`
(torch's threads on the CPU) and `repo_files` (every file of the repo, among them the records
the card reads).

Example:
    python run_speech_recognition_ctc.py --model_name_or_path ./ \
        --dataset_name /data/cv-corpus-17.0 --dataset_config_name hy-AM \
        --output_dir ./ --do_train --do_eval --max_steps 2000
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    EvalPrediction,
    HfArgumentParser,
    SchedulerType,
    Trainer,
    TrainingArguments,
    Wav2Vec2CTCTokenizer,
    set_seed,
)

# The runtime this repo carries (ctcforge_runtime/, the same in every repo ctcforge stamps).
from ctcforge_runtime import (
    adapters, checkpoints, clip_preparation, cpu_threads, ctc_frames, error_rates, features_on_the_fly, speech_data,
    repo_files, starting_weights, text_normalizer, training_schedule, vocabulary,
)
from ctcforge_runtime.errors import CtcforgeError

logger = logging.getLogger(__name__)

# The repo this script belongs to, which keeps the record of the last training run too.
REPO_DIR = Path(__file__).resolve().parent


@dataclass
class ModelArguments:
    """Which model to start from, and the regularisation settings written into its config.
    DO ADAPT FOR YOUR USE CASE: the defaults."""

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
    # Upstream's adapter script defaults to 16 and so always trains adapters; here the
    # model's config decides (16 for facebook/mms-1b-all), and this adds them to another.
    adapter_attn_dim: int | None = field(
        default=None,
        metadata={"help": "Width of the language adapter layers; given, only the adapters and the output "
                  "layer are trained. Default: config.json's adapter_attn_dim (none: full fine-tuning)."},
    )


@dataclass
class DataTrainingArguments:
    """Which data to train and evaluate on, and how to prepare it.
    DO ADAPT FOR YOUR USE CASE: the defaults."""

    dataset_name: str = field(
        metadata={"help": "Dataset for speech_data.load_speech_dataset, e.g. a Common Voice folder."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Its configuration, e.g. the Common Voice locale hy-AM."}
    )
    target_language: str | None = field(
        default=None,
        metadata={"help": "Adapter models: the ISO 639-3 code whose adapter is trained and saved as "
                  "adapter.<code>.safetensors (default: language_profile.json's iso639_3)."},
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
    # Upstream's adapter script's flags, accepted so its command lines run unchanged.
    token: str | None = field(
        default=None, metadata={"help": "Accepted for upstream's command lines; unused (no Hub access)."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Accepted for upstream's command lines; unused (no remote code runs)."}
    )
    overwrite_lang_vocab: bool = field(
        default=False,
        metadata={"help": "Accepted for upstream's command lines: each adapter file records its own labels here."},
    )
    speed_perturbation: list[float] | None = field(
        default=None,
        metadata={
            "help": "Speed factors such as 0.9 1.0 1.1: each time a training clip is batched it is "
            "played at one of them, drawn at random (faster is shorter and higher). Off by default. "
            "The training clips are then kept as audio and turned into features batch by batch."
        },
    )
    features_on_the_fly: str = field(
        default=features_on_the_fly.AUTO,
        metadata={
            "help": "yes: prepare only a manifest of each split (paths, durations, labels) and decode the clips "
            "and compute their features batch by batch, in the --dataloader_num_workers workers; no: prepare "
            "every clip's features before training (held in memory for a local release folder); auto: yes "
            "for a split whose features would take more than 2 GiB (estimated from the durations "
            "clip_durations.tsv lists, 5 s for a clip it does not list).",
            "choices": list(features_on_the_fly.MODES),
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
            "choices": [scheduler.value for scheduler in SchedulerType] + [training_schedule.TRISTAGE],
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
        default=training_schedule.TRISTAGE_INIT_LR_SCALE,
        metadata={"help": "tristage only: the learning rate at step 0, as a fraction of --learning_rate."},
    )
    final_lr_scale: float = field(
        default=training_schedule.TRISTAGE_FINAL_LR_SCALE,
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
    torch_threads: int | None = field(
        default=None,
        metadata={
            "help": "Threads torch computes with when training on the CPU. Default: the CPUs other jobs "
            "leave free (measured over half a second), at least 1, since threads sharing busy cores slow "
            "training far more than the CPU time they lose (see cpu_threads.py); OMP_NUM_THREADS, when "
            "set, decides."
        },
    )

    def __post_init__(self):
        self.choose_precision_for_the_machine()
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"--torch_threads must be at least 1, not {self.torch_threads}")
        tristage = self.lr_scheduler_type == training_schedule.TRISTAGE
        if tristage:
            # TrainingArguments turns the name into a SchedulerType, which has no tristage and
            # no way to add one: it checks everything else against a stand-in, and gets the
            # real name back after (CTCTrainer.create_scheduler builds the schedule itself).
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
        self.lr_scheduler_type = training_schedule.TRISTAGE
        training_schedule.check_tristage(self.lr_scheduler_ratios, self.init_lr_scale, self.final_lr_scale)

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
    # --gradient_checkpointing is the 2022 recipe's flag, which this script keeps so that old
    # command lines (and the card's) run; transformers 5 still honours it but calls it
    # deprecated, which no user of those command lines can act on.
    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)
    try:  # settings the arguments' own checks refuse (--lr_scheduler_ratios ...) say why in one line
        if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
            # Like upstream: a single JSON file holds all the arguments.
            return parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
        return parser.parse_args_into_dataclasses()
    except ValueError as error:
        raise CtcforgeError(f"{error}") from None


def resolve_training_arguments(
    data_args: DataTrainingArguments, training_args: SpeechTrainingArguments, layerdrop: float = 0.0
) -> SpeechTrainingArguments:
    """Maps the old flags onto today's TrainingArguments fields, sets the one field this
    script depends on, and makes `layerdrop` train under DDP.

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
            raise CtcforgeError(f"--push_to_hub needs the Hub, and {problem}; log in with "
                             "`hf auth login`, or drop --push_to_hub and upload the trained repo "
                             "later with `ctcforge push REPO --repo-id ORG/NAME`")
    if data_args.phoneme_language:
        logger.info("--phoneme_language ignored: this repo's model writes characters, not phonemes.")
    if training_args.lr_scheduler_type == training_schedule.TRISTAGE and training_args.warmup_steps:
        logger.warning("--warmup_steps is ignored: tristage warms up for the first of its "
                       "--lr_scheduler_ratios instead.")
    # The collator picks the model's inputs out of each example itself. Left on, the
    # Trainer would strip every column the model's forward() does not name before batching:
    # the length column that group_by_length sorts by (it would then read every clip to
    # measure it again) and the audio kept for --speed_perturbation.
    if training_args.remove_unused_columns:
        changes["remove_unused_columns"] = False
    # Under DDP (torchrun, accelerate launch: several GPUs) a layer that layerdrop skips gets
    # no gradient, and DDP stops at the first step ("Expected to have finished reduction in
    # the prior iteration"). DDP is told to look for unused parameters, which re-entrant
    # gradient checkpointing does not survive, so checkpointing goes non-re-entrant.
    if layerdrop > 0 and training_args.world_size > 1:
        if training_args.ddp_find_unused_parameters is None:
            changes["ddp_find_unused_parameters"] = True
        if training_args.gradient_checkpointing:
            changes["gradient_checkpointing_kwargs"] = {"use_reentrant": False,
                                                        **(training_args.gradient_checkpointing_kwargs or {})}
        logger.info(f"--layerdrop {layerdrop} on {training_args.world_size} processes: DDP looks for the "
                    "parameters of skipped layers (ddp_find_unused_parameters), and gradient checkpointing "
                    "is non-re-entrant.")
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
    # This script's own messages and its modules' (the dropped-clip table, what the weights
    # started from, the checkpoint resumed) are worth reading on the main process; the
    # libraries follow --log_level.
    own_modules = (starting_weights, speech_data, checkpoints, vocabulary, clip_preparation,
                   features_on_the_fly, training_schedule, adapters)
    for name in (__name__, *(module.__name__ for module in own_modules)):
        logging.getLogger(name).setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    library_level = training_args.get_process_log_level()
    datasets.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


# ---------------------------------------------------------------------------------------
# Text
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
    if model_args.adapter_attn_dim is not None:
        settings["adapter_attn_dim"] = model_args.adapter_attn_dim
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


class CTCTrainer(features_on_the_fly.BatchDropCounting, Trainer):
    """The Trainer with its learning-rate schedule chosen by `training_schedule` (tristage, and
    any schedule following the --max_train_minutes clock), greedy labels per frame in place
    of the logits at evaluation, and the clips that fail when a batch is made counted."""

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        # The Trainer's documented place for a schedule of one's own. Each train() call asks
        # for one: a schedule made here is made again for that call's steps, as the Trainer
        # does with its own; one passed in through `optimizers` is kept.
        if self.lr_scheduler is None or self.lr_scheduler is getattr(self, "own_schedule", None):
            clock = next((callback for callback in self.callback_handler.callbacks
                          if isinstance(callback, training_schedule.TrainingClock)), None)
            self.own_schedule = self.lr_scheduler = training_schedule.learning_rate_schedule(
                self.args, optimizer if optimizer is not None else self.optimizer, num_training_steps, clock)
        return self.lr_scheduler

    def compute_loss(self, model, inputs, *args, **kwargs):
        # The clips' input lengths are for counting frames at evaluation, not for forward().
        inputs = {key: value for key, value in inputs.items() if key != clip_preparation.INPUT_LENGTHS}
        return super().compute_loss(model, inputs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The Trainer's prediction step, with each clip's best label per frame instead of
        its logits, and the frames computed from padding marked -100 (blank).

        Padding is masked inside the encoder, but the frames it produces still get a label:
        left in, they would add letters after the end of every shorter clip in a batch, as
        if the model had heard them. Each clip's frames are counted from its own input
        length, as eval.py does; the attention mask of a log-mel batch can be a row short."""
        lengths = inputs.get(clip_preparation.INPUT_LENGTHS)
        if lengths is None:
            raise ValueError(f"the batch has no {clip_preparation.INPUT_LENGTHS}; collate it with "
                             "clip_preparation.DataCollatorCTCWithPadding")
        inputs = {key: value for key, value in inputs.items() if key != clip_preparation.INPUT_LENGTHS}
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if logits is None:
            return loss, logits, labels
        if isinstance(logits, tuple):
            logits = logits[0]
        ids = logits.argmax(dim=-1)
        frames = ctc_frames.output_frames(self.accelerator.unwrap_model(model), lengths.tolist())
        positions = torch.arange(ids.shape[1], device=ids.device)
        ids = ids.masked_fill(positions[None, :] >= torch.tensor(frames, device=ids.device)[:, None], -100)
        return loss, ids, labels


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

def load_split(data_args: DataTrainingArguments, split: str, sampling_rate: int, max_samples: int | None):
    """One split, its audio column switched to undecoded (path and bytes).

    Decoding then happens clip by clip in `clip_preparation.ClipPreparer`, where a file
    that fails to decode is counted and skipped; left to `datasets`, it would fail while
    reading the row, outside any code of ours, and end the whole `map`.
    """
    dataset = speech_data.load_speech_dataset(
        data_args.dataset_name,
        data_args.dataset_config_name,
        split,
        text_column=data_args.text_column_name,
        sampling_rate=sampling_rate,
        with_durations=True,  # a release's listed durations filter clips before any is decoded
    )
    for column in (data_args.audio_column_name, data_args.text_column_name):
        if column not in dataset.column_names:
            columns = ", ".join(dataset.column_names)
            raise CtcforgeError(f"split {split!r} has no column {column!r} (columns: {columns})")
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
        raise CtcforgeError(f"unknown --eval_metrics {' '.join(unknown)} "
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


def main() -> None:
    # 1. Arguments, logging, threads, and where a restarted run resumes.
    model_args, data_args, training_args = parse_arguments()
    setup_logging(training_args)
    training_args = resolve_training_arguments(data_args, training_args, model_args.layerdrop)
    # All ~100 of them at --log_level debug; training_args.bin and the card keep them too.
    logger.debug(f"Training/evaluation parameters {training_args}")
    if training_args.use_cpu or not torch.accelerator.is_available():
        logger.info(cpu_threads.set_torch_threads(training_args.torch_threads, training_args.world_size))
    output_dir = Path(training_args.output_dir)
    checkpoint = checkpoints.checkpoint_to_resume(training_args, data_args.overwrite_output_dir)
    # 2. Where the weights come from, checked now: a model that cannot be loaded should stop
    #    the run before hours of data preparation, not after.
    start = starting_weights.starting_point(model_args.model_name_or_path, model_args.from_scratch)
    for name in {model_args.model_name_or_path, start.source} - {None}:
        starting_weights.check_reachable(name, model_args.cache_dir)
    # A CTC checkpoint's labels, read before this run writes its own vocab.json, so that its
    # head keeps the row of every label it knew.
    head_labels = starting_weights.head_labels(start, model_args.cache_dir)

    # Before anything random: a model without weights is initialised from this seed.
    set_seed(training_args.seed)

    # 3. The text rules, the audio front end and the splits, their transcripts normalised.
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
            speed_perturbation = clip_preparation.SpeedPerturbation(data_args.speed_perturbation,
                                                                    feature_extractor.sampling_rate)
        except ValueError as error:
            raise CtcforgeError(str(error)) from None

    raw_splits = {}
    if training_args.do_train:
        raw_splits["train"] = load_split(data_args, data_args.train_split_name,
                                         feature_extractor.sampling_rate, data_args.max_train_samples)
    if training_args.do_eval:
        raw_splits["eval"] = load_split(data_args, data_args.eval_split_name,
                                        feature_extractor.sampling_rate, data_args.max_eval_samples)
    raw_splits = {name: add_normalised_text(split, data_args, normalizer, training_args)
                  for name, split in raw_splits.items()}

    # 4. The vocabulary and the tokenizer over it.
    training_characters = None
    if "train" in raw_splits:
        training_characters = set("".join(raw_splits["train"]["target_text"]))
    # A checkpoint's own folder holds no vocab.json; the run folder above it does.
    resuming_in = Path(checkpoint).parent if checkpoint else None
    vocab = vocabulary.choose_vocabulary(model_args, data_args, training_characters, resuming_in)
    vocabulary.warn_about_unknown_training_characters(vocab, training_characters, data_args)
    with training_args.main_process_first(desc="writing vocab.json"):
        # One writer per machine (main_process_first lets each machine's first process go
        # first); the others then read what it wrote.
        tokenizer = vocabulary.create_tokenizer(vocab, output_dir, data_args,
                                                write=training_args.local_process_index == 0)

    # 5. The model, its output layer sized for the vocabulary.
    config = AutoConfig.from_pretrained(model_args.model_name_or_path, cache_dir=model_args.cache_dir)
    configure_for_ctc(config, model_args, tokenizer)
    model = starting_weights.load_ctc_model(start, config, model_args.cache_dir, tokenizer, head_labels)
    if model.main_input_name != input_name:
        raise CtcforgeError(f"the model reads {model.main_input_name} but the feature extractor "
                            f"writes {input_name}: config.json and preprocessor_config.json do not match.")
    vocabulary.check_labels(tokenizer, model.config.vocab_size, "the model", every_token=True)
    # A model with language adapters (MMS) trains only its language's adapter and head.
    language = None
    if adapters.has_adapters(model.config) or data_args.target_language:
        language = data_args.target_language or normalizer.profile.get("iso639_3")
        adapters.start_adapter_training(model, language, [start.source, model_args.model_name_or_path],
                                        vocab, model_args.cache_dir)
        checkpoint = adapters.checkpoint_of_language(checkpoint, language)
    elif model_args.freeze_feature_encoder:
        freeze_feature_encoder(model, randomly_initialised=not start.pretrained)

    # 6. Each clip decoded, filtered and featurised (or listed, to be featurised batch by batch).
    splits, dropped, preparer = {}, {}, None
    extractor = clip_preparation.fast_feature_extractor(feature_extractor)  # the same features, faster
    for name, raw in raw_splits.items():
        # Only training clips are perturbed; they keep their audio for it.
        perturbed = name == "train" and speed_perturbation is not None
        on_the_fly = features_on_the_fly.computes_on_the_fly(data_args.features_on_the_fly, raw, extractor,
                                                             perturbed, name)
        preparer = clip_preparation.ClipPreparer(extractor, tokenizer, input_name, length_column,
                                                 data_args.audio_column_name, data_args, keep_waveform=perturbed,
                                                 on_the_fly=on_the_fly)
        if on_the_fly and training_args.dataloader_num_workers == 0:
            logger.warning(f"{name}: its clips are decoded batch by batch in the training process itself; "
                           "give --dataloader_num_workers 2 or more to do that beside the training")
        splits[name], dropped[name] = clip_preparation.prepare_split(
            raw, name, preparer, model, data_args, training_args,
            fastest_speed=max(speed_perturbation.factors) if perturbed else 1.0,
        )
    clip_preparation.log_drop_table(dropped, splits)
    for name, split in splits.items():
        if len(split) == 0:
            raise CtcforgeError(f"no usable clips left in the {name} split (see the table above)")
    if "eval" in splits:
        warn_about_unknown_eval_characters(splits["eval"], tokenizer)

    if data_args.preprocessing_only:
        logger.info("Data preprocessing finished (--preprocessing_only).")
        return

    # 7. The trainer. The processor is saved first, so that output_dir loads even if the run
    #    stops early; the model follows at the end.
    if training_args.should_save:
        feature_extractor.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)

    clock = training_schedule.TrainingClock(training_args.max_train_minutes) if training_args.max_train_minutes else None
    trainer = CTCTrainer(
        model=model,
        args=training_args,
        # The last split's preparer decodes manifest rows: every split's reads and checks them alike.
        data_collator=clip_preparation.DataCollatorCTCWithPadding(extractor, tokenizer, input_name,
                                                                  speed_perturbation, clip_reader=preparer),
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("eval"),
        # Checkpoints then carry preprocessor_config.json, as upstream's do.
        processing_class=feature_extractor,
        compute_metrics=metrics_computer(tokenizer, normalizer, metric_names),
        callbacks=[callback for callback in (clock, language and adapters.SaveAdapterWithCheckpoints(language, vocab))
                   if callback],
    )

    # 8. Training, and the records the card and eval.py read (DO NOT CHANGE: `repo_files`
    #    is the contract with them).
    if training_args.do_train:
        with checkpoints.explain_full_disk(output_dir, trainer):  # one line, not the writer's traceback
            result = trainer.train(resume_from_checkpoint=checkpoint)
            trainer.save_model()
        adapter = None
        if language and training_args.should_save:
            adapter = adapters.adapter_record(model, adapters.save_adapter(model, output_dir, language, vocab))
        metrics = {**result.metrics, "train_samples": len(splits["train"]),
                   "train_clips_dropped_while_batching": features_on_the_fly.log_batch_drops(trainer.state.log_history)}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if training_args.should_save:
            repo_files.write_hyperparameters(output_dir, repo_files.card_hyperparameters(
                training_args, data_args.speed_perturbation, trainer.state.global_step))
            # In the run folder, and in the repo too, so that ctcforge card, push and eval.py
            # find a model trained into another --output_dir.
            run = repo_files.finished_run(start.description, output_dir, trainer.state.global_step, adapter)
            for folder in {output_dir.resolve(), REPO_DIR}:
                repo_files.write_training_run(folder, run)
            logger.info("Next: `ctcforge lm ./ --dataset ...` builds and tunes the n-gram LM, "
                        "`python eval.py --model_id ./ ...` evaluates, `ctcforge card ./` writes the card.")

    # 9. Evaluation on the eval split.
    if training_args.do_eval:
        metrics = {**trainer.evaluate(), "eval_samples": len(splits["eval"])}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    try:
        main()
    except CtcforgeError as error:  # the one place a problem of the user's becomes an exit
        sys.exit(f"error: {error}")
