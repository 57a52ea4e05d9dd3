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


@dataclass(frozen=True)
class HeadLabels:
    """The label of each row of a checkpoint's CTC head, and which labels are its blank
    (padding), unknown and word delimiter, whatever they are called there."""

    ids: dict[str, int]
    pad: str | None
    unk: str | None
    delimiter: str | None

    def row_of(self, token: str, ours) -> int | None:
        """The head row that wrote `token` of our tokenizer `ours`: a special token by its
        role, any other by its spelling."""
        role = {ours.pad_token: self.pad, ours.unk_token: self.unk,
                getattr(ours, "word_delimiter_token", None): self.delimiter}
        return self.ids.get(role.get(token, token)) if token in role else self.ids.get(token)


def head_labels(point: StartingPoint, cache_dir: str | None = None) -> HeadLabels | None:
    """The labels of the starting checkpoint's CTC head, read from its tokenizer before this
    run writes its own vocab.json (which, in a repo continuing from its own weights, is the
    same file); None for a checkpoint that is no CTC model, or has no tokenizer."""
    if not point.pretrained:
        return None
    from transformers import AutoConfig, AutoTokenizer

    # Only a CTC checkpoint has a head to keep: a pretraining one (XLS-R, MMS-300m), the usual
    # base, is not searched for a tokenizer, which on the Hub would cost lookups for nothing.
    try:
        architectures = AutoConfig.from_pretrained(point.source, cache_dir=cache_dir).architectures or []
    except (OSError, ValueError):
        return None
    if not any(name.endswith("ForCTC") for name in architectures):
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(point.source, cache_dir=cache_dir)
    except Exception as error:  # no tokenizer files beside the CTC weights, or none to reach
        logger.info(f"{point.source} has no tokenizer to name its output rows ({type(error).__name__}); "
                    "a CTC head in it is not kept")
        return None
    return HeadLabels(ids=dict(tokenizer.get_vocab()), pad=tokenizer.pad_token, unk=tokenizer.unk_token,
                      delimiter=getattr(tokenizer, "word_delimiter_token", None))


def keep_trained_head_rows(model, point: StartingPoint, labels: HeadLabels, tokenizer,
                           cache_dir: str | None = None) -> str | None:
    """Gives every label the checkpoint's head knew the row the checkpoint trained for it
    (matched by label, not by id, so a vocabulary in another order or with letters added
    loses nothing), and every other label a freshly initialised row. Returns what was
    kept and added, for the log; None when the checkpoint has no CTC head to keep."""
    import torch

    head = checkpoint_tensors(point.source, ("lm_head.weight", "lm_head.bias"), cache_dir)
    weight, bias = model.lm_head.weight, model.lm_head.bias
    if head is None or head["lm_head.weight"].shape[1:] != weight.shape[1:]:
        return None
    kept, added = 0, []
    with torch.no_grad():
        for token, index in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
            if index >= weight.shape[0]:
                continue
            row = labels.row_of(token, tokenizer)
            if row is not None and row < head["lm_head.weight"].shape[0]:
                weight[index] = head["lm_head.weight"][row]
                bias[index] = head["lm_head.bias"][row]
                kept += 1
            else:
                torch.nn.init.normal_(weight[index], std=model.config.initializer_range)
                bias[index] = 0.0
                added.append(token)
    new = f"; new, initialised afresh: {', '.join(map(repr, added))}" if added else ""
    return f"CTC head: {kept} of {kept + len(added)} labels keep the rows {point.source} trained for them{new}"


def checkpoint_tensors(source: str, names: tuple[str, ...], cache_dir: str | None = None) -> dict | None:
    """The named tensors of a checkpoint (a folder, or a Hub id in the cache), read alone;
    None when a name is not there."""
    import torch
    from safetensors import safe_open

    def local(name: str) -> Path | None:
        if Path(source).is_dir():
            return Path(source) / name if (Path(source) / name).is_file() else None
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(source, name, cache_dir=cache_dir))
        except Exception:  # not in that repo, or the Hub unreachable: no head to keep
            return None

    found = {}
    index = local("model.safetensors.index.json")
    if index is not None:
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = {name: local(shards[name]) for name in names if name in shards}
    elif (single := local("model.safetensors")) is not None:
        files = dict.fromkeys(names, single)
    else:
        pickle = local("pytorch_model.bin")
        if pickle is None:
            return None
        state = torch.load(pickle, map_location="cpu", weights_only=True)
        return {name: state[name] for name in names} if all(name in state for name in names) else None
    for name, path in files.items():
        if path is None:
            return None
        with safe_open(str(path), framework="pt") as tensors:
            if name not in tensors.keys():
                return None
            found[name] = tensors.get_tensor(name)
    return found if len(found) == len(names) else None


def load_ctc_model(point: StartingPoint, config, cache_dir: str | None = None, tokenizer=None,
                   labels: HeadLabels | None = None):
    """The CTC model for `config`, with the weights of `point` (random for scratch).

    The output layer is made for the repo's labels. A pretraining checkpoint has none; a
    CTC checkpoint's head keeps, given its `labels` and our `tokenizer`, the trained row of
    every label it knew (`keep_trained_head_rows`), the others initialised afresh.
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
    kept = None
    if labels is not None and tokenizer is not None and not getattr(config, "adapter_attn_dim", None):
        kept = keep_trained_head_rows(model, point, labels, tokenizer, cache_dir)  # MMS: adapters.py's
    logger.info(f"Starting from {point.description}:\n{report.describe()}" + (f"\n  {kept}" if kept else ""))
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
