"""Where a training run's weights come from, and loading them with a report of what loaded.

Used by the training script. A repo stamped by `ctcforge new --base-model M` holds M's
architecture (`config.json`, sized for the repo's labels) but no weights, and
`base_model.json` records M, so that `--model_name_or_path ./` fine-tunes M:

- source "scratch" (the `tiny` architecture): random initialisation;
- source "local": the weights of the folder the record names;
- source "hub": `from_pretrained` of the id, from the Hub or the local cache.

Once the folder holds weights of its own (a finished run), training continues from them.
Nothing starts from random weights unless the record or `--from_scratch` says so: a 300M
model trained from scratch on a GPU burns hours and learns next to nothing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import CtcforgeError
from .repo_files import BASE_MODEL_FILE, CONFIG_FILE, PREPROCESSOR_FILE, WEIGHT_FILES, has_weights

logger = logging.getLogger(__name__)

# Tensors a CTC model may lack in a pretrained checkpoint: the output layer, sized for this
# repo's labels, and the SpecAugment mask embedding, which a checkpoint saved with masking
# off does not have; and the language adapter layers that --adapter_attn_dim adds to a
# checkpoint without them (adapters.py). Any other missing tensor means the checkpoint
# does not fit the config.
NEW_TENSOR_MARKERS = ("lm_head.", "masked_spec_embed", ".adapter_layer.")
SHOWN = 4  # tensor names listed per group in the loading report


@dataclass(frozen=True)
class StartingPoint:
    """What a run's weights start from."""

    source: str | None  # a folder or Hub id for from_pretrained; None: random initialisation
    description: str  # for the log and training_run.json

    @property
    def pretrained(self) -> bool:
        return self.source is not None


def read_base_model_record(folder: str | Path) -> dict | None:
    path = Path(folder) / BASE_MODEL_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CtcforgeError(f"{path} does not parse ({error}); restamp the repo with "
                                   "`ctcforge new --force` or fix the file") from None
    if not isinstance(record, dict) or record.get("source") not in ("scratch", "local", "hub"):
        raise CtcforgeError(f"{path}: expected source scratch, local or hub, found {record!r}")
    return record


def starting_point(model_name_or_path: str, from_scratch: bool = False) -> StartingPoint:
    """Where the weights come from, for `--model_name_or_path` (and `--from_scratch`)."""
    if from_scratch:
        return StartingPoint(None, "random initialisation (--from_scratch)")
    folder = Path(model_name_or_path)
    if not folder.is_dir():
        return StartingPoint(model_name_or_path, model_name_or_path)  # a Hub id
    if has_weights(folder):
        return StartingPoint(str(folder), f"the weights in {folder}")
    record = read_base_model_record(folder)
    if record is None:
        raise CtcforgeError(
            f"{folder} holds no weights and no {BASE_MODEL_FILE} naming a base model: pass "
            "--model_name_or_path a pretrained checkpoint (a folder or a Hub id), or --from_scratch "
            "to train from random weights")
    if record["source"] == "scratch":
        return StartingPoint(None, f"random initialisation ({record.get('id', 'tiny')} architecture)")
    if record["source"] == "local":
        base = Path(record.get("path", ""))
        if not base.is_dir() or not has_weights(base):
            raise CtcforgeError(
                f"{folder / BASE_MODEL_FILE} names the base model folder {base}, which holds no weights "
                f"({' or '.join(WEIGHT_FILES[::2])}); put the checkpoint back there, or pass its folder "
                "as --model_name_or_path")
        return StartingPoint(str(base), str(base))
    return StartingPoint(record["id"], record["id"])


def unreachable_message(model_id: str) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    why = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached"
    return (f"cannot load {model_id}: it is not in the local model cache and {why}. Connect to the "
            f"network{' and unset HF_HUB_OFFLINE' if offline else ''}, or download it on another "
            f"machine (`hf download {model_id} --local-dir DIR`) and pass --model_name_or_path DIR "
            "(or stamp the repo with `ctcforge new LANG --base-model DIR`)")


def check_reachable(name: str, cache_dir: str | None = None) -> None:
    """Fails now, before hours of data preparation, when a Hub model cannot be loaded.

    Loading its config is cheap and takes the same path as the weights: the Hub, else the
    local cache (HF_HUB_OFFLINE=1 goes to the cache alone).
    """
    if Path(name).is_dir():
        check_model_json(name)
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, cache_dir=cache_dir)
    except OSError:
        raise CtcforgeError(unreachable_message(name)) from None


# The model folder's settings files that every load reads first; one cut short or edited
# into invalid JSON would otherwise end the run in a JSONDecodeError traceback.
MODEL_JSON_FILES = (CONFIG_FILE, PREPROCESSOR_FILE)


def check_model_json(folder: str | Path) -> None:
    """Raises CtcforgeError when a model folder lacks config.json, or when one of its
    MODEL_JSON_FILES is not a JSON object."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CtcforgeError(f"{folder} has no config.json; restore it (git checkout config.json), or "
                                   "stamp the repo again with `ctcforge new --force`")
    for name in MODEL_JSON_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            problem = f"is not valid JSON ({error})"
        else:
            if isinstance(data, dict):
                continue
            problem = "is not a JSON object"
        raise CtcforgeError(f"{path} {problem}; restore it (git checkout {name}, or the copy in the "
                                   "checkpoint-N folder it was saved with), or stamp the repo again with "
                                   "`ctcforge new --force`")


def load_ctc_model(point: StartingPoint, config, cache_dir: str | None = None):
    """The CTC model for `config`, with the weights of `point` (random for scratch).

    The output layer is always made for the repo's labels: a pretraining checkpoint has
    none, and a fine-tuned one has one for another label set, which is then re-initialised.
    Every other tensor must come from the checkpoint; one that does not means the
    checkpoint is of another architecture than config.json says, and fine-tuning it would
    train mostly random weights.
    """
    from transformers import AutoModelForCTC

    if not point.pretrained:
        logger.info(f"Starting from {point.description}.")
        return AutoModelForCTC.from_config(config)
    try:
        model, info = AutoModelForCTC.from_pretrained(
            point.source, config=config, cache_dir=cache_dir, ignore_mismatched_sizes=True,
            output_loading_info=True)
    except OSError as error:
        if Path(point.source).is_dir():
            raise CtcforgeError(f"{point.source}: {error}") from None
        raise CtcforgeError(unreachable_message(point.source)) from None
    report = LoadingReport.from_info(info, model)
    logger.info(f"Starting from {point.description}:\n{report.describe()}")
    problem = report.misfit()
    if problem:
        raise CtcforgeError(
            f"{point.source}: the checkpoint's weights do not fit config.json ({config.model_type}): "
            f"{problem}; is it a checkpoint of another family, or another size, than config.json says?")
    return model


@dataclass
class LoadingReport:
    """Which of the model's tensors came from the checkpoint, which are new, which of the
    checkpoint's were dropped (a pretraining checkpoint's quantizer and projection heads)."""

    loaded: list[str]
    new: list[str]
    dropped: list[str]
    reshaped: list[str]  # in the checkpoint with another shape, so re-initialised

    @classmethod
    def from_info(cls, info: dict, model) -> "LoadingReport":
        reshaped = [entry[0] if isinstance(entry, (tuple, list)) else str(entry)
                    for entry in info.get("mismatched_keys", [])]
        missing = set(info.get("missing_keys", [])) | set(reshaped)
        names = [name for name, _ in model.state_dict().items()]
        return cls(loaded=[n for n in names if n not in missing],
                   new=sorted(set(info.get("missing_keys", [])) - set(reshaped)),
                   dropped=sorted(info.get("unexpected_keys", [])), reshaped=sorted(reshaped))

    def describe(self) -> str:
        def listed(names: list[str]) -> str:
            more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
            return ", ".join(names[:SHOWN]) + more

        lines = [f"  loaded from the checkpoint: {len(self.loaded)} tensors"]
        if self.new:
            lines.append(f"  new, randomly initialised: {len(self.new)} ({listed(self.new)})")
        if self.reshaped:
            lines.append(f"  re-initialised, another shape in the checkpoint: {len(self.reshaped)} "
                         f"({listed(self.reshaped)})")
        if self.dropped:
            lines.append(f"  in the checkpoint but unused: {len(self.dropped)} ({listed(self.dropped)})")
        return "\n".join(lines)

    def misfit(self) -> str | None:
        """Why the checkpoint does not fit the model, or None."""
        unexplained = [n for n in self.new + self.reshaped
                       if not any(marker in n for marker in NEW_TENSOR_MARKERS)]
        if not unexplained:
            return None
        return (f"{len(unexplained)} of the model's {len(self.loaded) + len(self.new) + len(self.reshaped)} "
                f"tensors are missing from it or shaped otherwise (e.g. {', '.join(unexplained[:3])})")
