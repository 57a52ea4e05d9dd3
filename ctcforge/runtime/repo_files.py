"""Every file of a language repo, named once: the contract between the repo's two scripts,
the runtime they import and the ctcforge tool.

Each name sits beside the function that reads it and the one that writes it; where a file's
format is another module's whole subject, the comment names that module instead:

| file | written by | read by |
| --- | --- | --- |
| `config.json`, `preprocessor_config.json`, tokenizer files | `ctcforge new` (catalogue), the Trainer | transformers |
| `language_profile.json` | `ctcforge new` | `text_normalizer.load` |
| `base_model.json` | `ctcforge new` (catalogue) | `starting_weights.read_base_model_record` |
| `.ctcforge-answers.yml` | `ctcforge new` / `update` (`ctcforge.answers`) | the same |
| `training_run.json` | `write_training_run` | `read_training_run` |
| `training_hyperparameters.json` | `write_hyperparameters` | `read_hyperparameters` |
| weights | the Trainer | `trained_weights_folder`, `trained_model_folder` |
| `*_eval_results.txt`, `*_eval_summary.json`, `log_*` | eval.py (`eval_file_names`) | `ctcforge.results` |
| `alphabet.json`, `language_model/` | `ctcforge lm` | `beam_search` |
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text_atomically
from .errors import CtcforgeError

# ---------------------------------------------------------------------------- code
# The runtime package's folder in a repo. Not `ctcforge`, so that running a repo's scripts
# beside an installed ctcforge can never import one in place of the other.
RUNTIME_FOLDER = "ctcforge_runtime"
# The two scripts a repo is for; the only Python files at its top level.
TRAINING_SCRIPT = "run_speech_recognition_ctc.py"
EVAL_SCRIPT = "eval.py"

# ---------------------------------------------------------------------------- the model
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
VOCAB_FILE = "vocab.json"
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", VOCAB_FILE)
# What from_pretrained loads weights from; pytorch_model.bin is the 2022 repos' pickle.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")

# ---------------------------------------------------------------------------- the records
PROFILE_FILE = "language_profile.json"
BASE_MODEL_FILE = "base_model.json"
ANSWERS_FILE = ".ctcforge-answers.yml"
# Written by the training script when a run finishes, into the repo and its --output_dir.
TRAINING_RUN_FILE = "training_run.json"
HYPERPARAMETERS_FILE = "training_hyperparameters.json"
TRAINER_STATE_FILE = "trainer_state.json"  # the Trainer's own

# ---------------------------------------------------------------------------- eval.py
RESULTS_SUFFIX = "_eval_results.txt"
SUMMARY_SUFFIX = "_eval_summary.json"

# ---------------------------------------------------------------------------- the LM
ALPHABET_FILE = "alphabet.json"
LANGUAGE_MODEL_DIR = "language_model"
ATTRS_FILE = "attrs.json"
UNIGRAMS_FILE = "unigrams.txt"
KENLM_EXTENSIONS = (".arpa", ".bin", ".binary")


@dataclass(frozen=True)
class EvalFileNames:
    """The files one eval.py run writes, for the dataset id `name` (2022's names)."""

    results: str
    summary: str
    predictions: str
    targets: str


# At most this share of a split's rows may be skipped (unreadable audio, empty transcripts)
# for its figures to stand for the split in a card's model-index.
MAX_SKIPPED_SHARE = 0.05


def is_complete_evaluation(evaluated: int, split_rows: int) -> bool:
    """Whether an eval.py run measured the split: every row asked for (no --max_samples
    cut), and no more than MAX_SKIPPED_SHARE of them skipped."""
    return split_rows > 0 and evaluated >= (1 - MAX_SKIPPED_SHARE) * split_rows


def eval_file_names(name: str) -> EvalFileNames:
    return EvalFileNames(results=f"{name}{RESULTS_SUFFIX}", summary=f"{name}{SUMMARY_SUFFIX}",
                         predictions=f"log_{name}_predictions.txt", targets=f"log_{name}_targets.txt")


# ---------------------------------------------------------------------------- JSON records

def write_json(path: str | Path, data: dict) -> None:
    """Written aside and renamed into place, so a reader never sees half a file."""
    write_text_atomically(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str | Path) -> dict | None:
    """A JSON object a script wrote, or None when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CtcforgeError(f"{path}: not JSON ({exc}); delete it or train again to rewrite it") from None
    if not isinstance(data, dict):
        raise CtcforgeError(f"{path}: not a JSON object; delete it or train again to rewrite it")
    return data


def write_hyperparameters(folder: str | Path, hyperparameters: dict) -> None:
    write_json(Path(folder) / HYPERPARAMETERS_FILE, hyperparameters)


def read_hyperparameters(folder: str | Path) -> dict:
    """The settings a card lists; empty when the folder has none."""
    return read_json(Path(folder) / HYPERPARAMETERS_FILE) or {}


@dataclass(frozen=True)
class TrainingRun:
    """training_run.json: what a finished run did and where its model went."""

    command: str  # the shell command really run
    output_dir: str  # absolute
    started_from: str  # a base model id or folder, "random initialisation", or a checkpoint
    steps: int
    framework_versions: dict[str, str]
    finished_at: str  # ISO 8601
    # An adapter fine-tune's adapter: language, file, bytes, parameters, model_parameters.
    adapter: dict | None = None

    def argument(self, name: str) -> str | None:
        """The value the command gave `--name` (as `--name VALUE` or `--name=VALUE`)."""
        argv = shlex.split(self.command)
        for i, token in enumerate(argv):
            if token == f"--{name}" and i + 1 < len(argv):
                return argv[i + 1]
            if token.startswith(f"--{name}="):
                return token.split("=", 1)[1]
        return None


_RUN_FIELDS = {"command": str, "output_dir": str, "started_from": str, "steps": int, "framework_versions": dict,
               "finished_at": str}
_ADAPTER_FIELDS = {"language": str, "file": str, "bytes": int, "parameters": int, "model_parameters": int}


def card_hyperparameters(args, speed_perturbation: list[float] | None = None,
                         steps_trained: int | None = None) -> dict:
    """The hyperparameter list a model card shows, in the order Trainer-made cards use,
    from the training script's TrainingArguments."""
    from . import training_schedule

    world_size = max(args.world_size, 1)
    values = {
        "learning_rate": args.learning_rate,
        "train_batch_size": args.per_device_train_batch_size,
        "eval_batch_size": args.per_device_eval_batch_size,
        "seed": args.seed,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size,
        "optimizer": f"{getattr(args.optim, 'value', args.optim)} with betas=({args.adam_beta1},{args.adam_beta2}) "
                     f"and epsilon={args.adam_epsilon}",
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
    }
    if args.lr_scheduler_type == training_schedule.TRISTAGE:
        # Its warm-up is the first ratio; --warmup_steps does not apply.
        values["lr_scheduler_ratios"] = list(args.lr_scheduler_ratios)
        # Shown only when not fairseq's defaults, which is what a tristage card implies.
        if args.init_lr_scale != training_schedule.TRISTAGE_INIT_LR_SCALE:
            values["lr_scheduler_init_lr_scale"] = args.init_lr_scale
        if args.final_lr_scale != training_schedule.TRISTAGE_FINAL_LR_SCALE:
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


def finished_run(started_from: str, output_dir: Path, steps: int, adapter: dict | None = None) -> TrainingRun:
    """The record of the run this process did: the command really run, where its model
    is, what it started from and the framework versions; for an adapter fine-tune, the
    adapter saved (`adapters.adapter_record`)."""
    import datetime
    import importlib.metadata
    import sys

    versions = {}
    for label, package in (("Transformers", "transformers"), ("Pytorch", "torch"), ("Datasets", "datasets"),
                           ("Tokenizers", "tokenizers")):
        try:
            versions[label] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return TrainingRun(command=shlex.join(["python", Path(sys.argv[0]).name, *sys.argv[1:]]),
                       output_dir=str(Path(output_dir).resolve()), started_from=started_from, steps=steps,
                       framework_versions=versions,
                       finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       adapter=adapter)


def write_training_run(folder: str | Path, run: TrainingRun) -> None:
    record = {key: getattr(run, key) for key in _RUN_FIELDS}
    write_json(Path(folder) / TRAINING_RUN_FILE, {**record, **({"adapter": run.adapter} if run.adapter else {})})


def read_training_run(folder: str | Path) -> TrainingRun | None:
    """training_run.json; None when there is none (the folder is not trained yet)."""
    path = Path(folder) / TRAINING_RUN_FILE
    data = read_json(path)
    if data is None:
        return None
    for key, kind in _RUN_FIELDS.items():
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CtcforgeError(f"{path}: {key!r} should be a {kind.__name__}, found {value!r}; delete the file "
                                "or train again to rewrite it")
    versions = data["framework_versions"]
    if not all(isinstance(v, str) for v in versions.values()):
        raise CtcforgeError(f"{path}: framework_versions should map names to version strings, found {versions!r}")
    try:
        shlex.split(data["command"])
    except ValueError as exc:
        raise CtcforgeError(f"{path}: command is not a shell command line ({exc})") from None
    adapter = data.get("adapter")
    if adapter is not None and not (isinstance(adapter, dict) and all(
            isinstance(adapter.get(key), kind) for key, kind in _ADAPTER_FIELDS.items())):
        raise CtcforgeError(f"{path}: 'adapter' should hold {', '.join(_ADAPTER_FIELDS)}, found {adapter!r}; "
                            "delete the file or train again to rewrite it")
    return TrainingRun(**{key: data[key] for key in _RUN_FIELDS}, adapter=adapter)


# ---------------------------------------------------------------------------- the weights

def has_weights(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in WEIGHT_FILES)


def check_weight_files(folder: str | Path) -> None:
    """Every safetensors file the folder's model loads from opens: a file cut short (a copy
    or download that stopped) or damaged is one CtcforgeError naming it, not a traceback
    from deep inside from_pretrained. (Pickles are read only when loaded.)"""
    from safetensors import safe_open

    folder = Path(folder)
    # The full weights, and the language adapters (MMS) from_pretrained(target_lang=...) loads.
    names = {"model.safetensors", *(path.name for path in folder.glob("adapter.*.safetensors"))}
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = (names - {"model.safetensors"}) | set(
                json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, AttributeError) as exc:
            raise CtcforgeError(f"{index}: not a safetensors index ({exc}); copy it again with its shards") from None
    for name in sorted(names):
        path = folder / name
        if not path.is_file():
            if index.is_file():
                raise CtcforgeError(f"{path}: missing, and {index.name} names it; copy every shard")
            continue
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # safetensors raises its own error type for every kind of damage
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CtcforgeError(f"{path}: cannot be read ({reason}): it is damaged or cut short; copy it again, "
                                "or train again") from None


def trained_weights_folder(repo: str | Path) -> Path | None:
    """Where a repo's trained weights are: the repo itself, else the --output_dir its
    training_run.json records when only that holds them; None when neither does.
    The one rule eval.py, `ctcforge export`, `card` and `push` follow."""
    repo = Path(repo)
    if has_weights(repo):
        return repo
    run = read_training_run(repo)
    if run is None or not run.output_dir:
        return None
    # Recorded absolute; a relative one (edited by hand) is read from the repo.
    output_dir = repo / run.output_dir
    return output_dir if has_weights(output_dir) else None


def trained_model_folder(model_id: str, repo_dir: str) -> str:
    """eval.py's `--model_id`, resolved to the folder (or Hub id) to load the model from.

    When `model_id` is the repo itself (`--model_id ./`, as the README runs it), its trained
    weights are where `trained_weights_folder` says. Any other folder's record is only
    named, not followed: a copied or stale record could point at another run's model, and
    evaluating it unasked would report numbers for the wrong model. The folder's
    config.json and preprocessor_config.json are checked to parse before anything loads."""
    from .starting_weights import check_model_json

    if not os.path.isdir(model_id):
        if model_id.startswith((".", "/", "~")):  # a path, not a Hub id
            raise CtcforgeError(f"--model_id {model_id}: no such folder")
        return model_id
    if has_weights(model_id):
        check_model_json(model_id)
        check_weight_files(model_id)
        return model_id
    try:
        found = trained_weights_folder(model_id)
    except CtcforgeError:
        found = None  # an unreadable record: the folder has no weights, said below
    if found is not None:
        if os.path.realpath(model_id) == os.path.realpath(repo_dir):
            check_model_json(found)
            check_weight_files(found)
            return str(found)
        raise CtcforgeError(f"the trained model is in {found} ({TRAINING_RUN_FILE}); run eval.py --model_id {found}")
    raise CtcforgeError(f"no trained weights in {model_id}: train first with "
                        "python run_speech_recognition_ctc.py ... (see README.md, Training)")
