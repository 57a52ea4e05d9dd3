"""MMS language adapters: training only a language's adapter layers and output layer, and
loading a model with the adapter of the language asked for.

Used by the training script and eval.py. A wav2vec2 config with `adapter_attn_dim` (facebook/mms-1b-all)
puts a small bottleneck layer after every encoder layer; one language is then the
adapter layers and the output layer, saved as `adapter.<ISO 639-3>.safetensors` beside
the weights, which `from_pretrained(folder, target_lang=...)` loads over the model's own.

Training freezes everything else, so a repo trained for one language and then another
keeps both: each language's file holds its own adapter and head. Each file also records
the labels its head was trained for, because the folder's vocab.json is the last run's.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCTC, AutoTokenizer, TrainerCallback, Wav2Vec2CTCTokenizer
from transformers.models.wav2vec2.modeling_wav2vec2 import WAV2VEC2_ADAPTER_SAFE_FILE
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import starting_weights
from .atomic import replacing
from .errors import CtcforgeError
from .repo_files import PROFILE_FILE

logger = logging.getLogger(__name__)

ADAPTER_FILE = WAV2VEC2_ADAPTER_SAFE_FILE  # "adapter.{}.safetensors", the name load_adapter looks for
ADAPTER_LAYER = ".adapter_layer."
HEAD = "lm_head."
# The adapter file's metadata key for the labels of its head (vocab.json's mapping, as JSON).
VOCAB_METADATA = "vocab"
# An adapter's name: an ISO 639-3 code, MMS's with a script (uzb-script_cyrillic), or any
# name that fits the data, as upstream allows; it becomes part of a file name.
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def has_adapters(config) -> bool:
    return getattr(config, "adapter_attn_dim", None) is not None


def is_adapter_tensor(name: str) -> bool:
    """The tensors one language owns: the adapter layers and the output layer, named as
    transformers' load_adapter expects them in an adapter file."""
    return ADAPTER_LAYER in name or name.startswith(HEAD)


def adapter_path(folder: str | Path, language: str) -> Path:
    return Path(folder) / ADAPTER_FILE.format(language)


def adapter_languages(folder: str | Path) -> list[str]:
    return sorted(language_of(path) for path in Path(folder).glob(ADAPTER_FILE.format("*")))


def language_of(path: Path) -> str:
    prefix, suffix = ADAPTER_FILE.split("{}")
    return path.name[len(prefix):-len(suffix)]


def profile_language(folder: str | Path) -> str | None:
    """The ISO 639-3 code of the language_profile.json in `folder`, if any."""
    path = Path(folder) / PROFILE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("iso639_3")


def find_adapter_file(source: str, language: str, cache_dir: str | None = None) -> Path | None:
    """adapter.<language>.safetensors of a model folder or Hub id, or None without one (a
    language the model has no adapter for, or a Hub model not reachable and not cached)."""
    if Path(source).is_dir():
        path = adapter_path(source, language)
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(source, ADAPTER_FILE.format(language), cache_dir=cache_dir))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def recorded_vocabulary(path: Path) -> dict[str, int] | None:
    """The labels an adapter file's head was trained for, when the file records them."""
    with safe_open(str(path), framework="pt") as file:
        text = (file.metadata() or {}).get(VOCAB_METADATA)
    return json.loads(text) if text else None


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def start_adapter_training(model, language: str | None, sources: list[str | None], vocab: dict[str, int],
                           cache_dir: str | None = None) -> None:
    """The training script's adapter step: `language`'s adapter ready to train, the rest
    frozen. Beside `sources` (the starting weights, the model folder), the base model
    the folder's base_model.json names is searched for an adapter of the language."""
    if not language:
        raise CtcforgeError("the model has language adapters: name the language to train with "
                           "--target_language (its ISO 639-3 code), or set iso639_3 in language_profile.json")
    if not ADAPTER_NAME.fullmatch(language):
        raise CtcforgeError(f"--target_language {language!r}: expected an ISO 639-3 code such as hye "
                           "(letters, digits, - and _)")
    folders = [source for source in sources if source]
    for folder in list(folders):
        record = starting_weights.read_base_model_record(folder) if Path(folder).is_dir() else None
        if record and record["source"] != "scratch":
            folders.append(record.get("path") or record["id"])
    described = prepare_adapter_training(model, language, folders, vocab, cache_dir)
    total = sum(parameter.numel() for parameter in model.parameters())
    trained = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    logger.info(f"Adapter fine-tuning for {language}: training {trained:,} of {total:,} parameters "
                f"({trained / total:.2%}), starting from {described}; the rest is frozen.")


def prepare_adapter_training(model, language: str, sources: list[str], vocab: dict[str, int],
                             cache_dir: str | None = None) -> str:
    """Freezes everything but `language`'s adapter layers and output layer, and gives
    those their starting values. Returns what they start from, for the log.

    The adapter layers come from the first of `sources` (model folders or Hub ids) with
    an adapter file for the language: the repo's own from an earlier run, else the base
    model's (MMS's adapter for a language it covers). The output layer comes from that
    file only if it was trained for these very labels; MMS's heads are for its own
    vocabularies. Whatever has no file is initialised afresh."""
    if not has_adapters(model.config):
        raise CtcforgeError("the model config has no adapter_attn_dim, so no adapter layers to train; "
                           "pass --adapter_attn_dim (16 for MMS)")
    found = next(((source, path) for source in dict.fromkeys(sources)
                  if (path := find_adapter_file(source, language, cache_dir)) is not None), None)
    own = {name: tensor for name, tensor in model.state_dict().items() if is_adapter_tensor(name)}
    if found is None:
        initialise(model, own)
        description = f"new {language} adapter layers and output layer (no {ADAPTER_FILE.format(language)} found)"
    else:
        source, path = found
        stored = load_file(str(path))
        same_labels = recorded_vocabulary(path) == vocab and stored.get(HEAD + "weight") is not None \
            and stored[HEAD + "weight"].shape == own[HEAD + "weight"].shape
        keep = {name: tensor for name, tensor in stored.items()
                if name in own and (same_labels or not name.startswith(HEAD))}
        missing = [name for name in own if ADAPTER_LAYER in name and name not in keep]
        if missing:
            raise CtcforgeError(f"{path} lacks {len(missing)} adapter tensors of this model (e.g. {missing[0]}); "
                               "was it trained with another adapter_attn_dim or number of layers?")
        initialise(model, {name: tensor for name, tensor in own.items() if name not in keep})
        model.load_state_dict(keep, strict=False)
        head = "and output layer" if same_labels else "(a new output layer for these labels)"
        description = f"the {language} adapter layers {head} of {source}"
    # What model.freeze_base_model() and unfreezing the adapters do, in one pass.
    for name, parameter in model.named_parameters():
        parameter.requires_grad = is_adapter_tensor(name)
    return description


@torch.no_grad()
def initialise(model, tensors: dict[str, torch.Tensor]) -> None:
    """transformers' initialisation of these adapter and head tensors: normal weights
    (std initializer_range), zero biases, unit LayerNorm scales. model.init_adapter_layers()
    would do it, but in transformers 5 it skips every tensor from_pretrained loaded, so
    an adapter loaded with the base would be trained on from the base's values."""
    modules = dict(model.named_modules())
    for name, tensor in tensors.items():
        module_name, _, kind = name.rpartition(".")
        if isinstance(modules[module_name], torch.nn.LayerNorm):
            tensor.fill_(1.0 if kind == "weight" else 0.0)
        elif kind == "weight":
            tensor.normal_(mean=0.0, std=model.config.initializer_range)
        else:
            tensor.zero_()


def save_adapter(model, folder: str | Path, language: str, vocab: dict[str, int]) -> Path:
    """adapter.<language>.safetensors in `folder`: the language's tensors, as
    from_pretrained(target_lang=...) loads them, with the labels of the head."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()
               if is_adapter_tensor(name)}
    path = adapter_path(folder, language)
    metadata = {"format": "pt", VOCAB_METADATA: json.dumps(vocab, ensure_ascii=False)}
    with replacing(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return path


def adapter_record(model, path: Path) -> dict:
    """What training_run.json says of the adapter, for the card: its file, its size and
    the share of the model it is."""
    own = sum(tensor.numel() for name, tensor in model.state_dict().items() if is_adapter_tensor(name))
    total = sum(tensor.numel() for tensor in model.state_dict().values())
    return {"language": language_of(path), "file": path.name, "bytes": path.stat().st_size, "parameters": own, "model_parameters": total}


class SaveAdapterWithCheckpoints(TrainerCallback):
    """Writes the language's adapter file into every checkpoint the Trainer saves, so that a
    checkpoint says which language it trained (see `checkpoint_of_language`)."""

    def __init__(self, language: str, vocab: dict[str, int]):
        self.language, self.vocab = language, vocab

    def on_save(self, args, state, control, model=None, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if model is not None and folder.is_dir() and state.is_world_process_zero:
            # A checkpoint is one language's: a folder reused from another's run loses its file.
            for other in set(adapter_languages(folder)) - {self.language}:
                adapter_path(folder, other).unlink()
            save_adapter(model, folder, self.language, self.vocab)


def checkpoint_of_language(checkpoint: str | None, language: str) -> str | None:
    """`checkpoint` if it trained `language`'s adapter, else None: a checkpoint left in the
    folder by another language's run would resume that language's adapter and head."""
    if checkpoint is None or adapter_path(checkpoint, language).is_file():
        return checkpoint
    trained = ", ".join(adapter_languages(checkpoint)) or "no language adapter"
    logger.warning(f"Not resuming {checkpoint}: it holds {trained}, not {ADAPTER_FILE.format(language)}; "
                   f"training {language} from the start.")
    return None


# ---------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------


def inference_language(model_id: str, requested: str | None, default: str | None) -> str | None:
    """The adapter to load from `model_id`: None for a model without adapters; else the one
    asked for, or `default` (the repo's language), or the folder's only adapter."""
    if not has_adapters(AutoConfig.from_pretrained(model_id)):
        if requested:
            raise CtcforgeError(f"--target_lang {requested}: {model_id} has no language adapters")
        return None
    if requested:
        return requested
    available = adapter_languages(model_id) if Path(model_id).is_dir() else []
    if default and (default in available or not Path(model_id).is_dir()):
        return default
    if len(available) == 1:
        return available[0]
    raise CtcforgeError(f"{model_id} holds the adapters of {', '.join(available) or 'no language'}: "
                       "choose one with --target_lang")


def load_ctc_model(model_id: str, language: str | None):
    """The CTC model and tokenizer of `model_id`, with `language`'s adapter loaded over the
    model's own (None: a model without adapters). The tokenizer decodes that adapter's
    labels: vocab.json's, or those the adapter file records when they differ."""
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    if language is None:
        return AutoModelForCTC.from_pretrained(model_id), tokenizer
    path = find_adapter_file(model_id, language)
    if path is None:
        raise CtcforgeError(f"{model_id} has no {ADAPTER_FILE.format(language)}: train that language first "
                           f"(run_speech_recognition_ctc.py --target_language {language})")
    model = AutoModelForCTC.from_pretrained(model_id, target_lang=language)
    vocab = recorded_vocabulary(path)
    if vocab is not None and vocab != tokenizer.get_vocab():
        tokenizer = tokenizer_for(vocab, tokenizer)
    return model, tokenizer


def pipeline_arguments(model_id: str, language: str | None = None) -> dict:
    """What `pipeline("automatic-speech-recognition", model=model_id, **...)` needs to load a
    model with `language`'s adapter (by default the folder's profile language, or its only
    adapter); nothing for a model without adapters. The tokenizer is named separately
    because pipeline() hands model_kwargs to it too, and a tokenizer given target_lang
    expects MMS's nested vocab.json, not this repo's one-language one."""
    language = inference_language(model_id, language, profile_language(model_id) if Path(model_id).is_dir() else None)
    if language is None:
        return {}
    return {"tokenizer": (model_id, {}), "model_kwargs": {"target_lang": language}}


def tokenizer_for(vocab: dict[str, int], like: Wav2Vec2CTCTokenizer) -> Wav2Vec2CTCTokenizer:
    """A CTC tokenizer over `vocab` with the special tokens of `like`."""
    with tempfile.TemporaryDirectory() as folder:
        vocab_file = Path(folder) / "vocab.json"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        return Wav2Vec2CTCTokenizer(str(vocab_file), unk_token=like.unk_token, pad_token=like.pad_token,
                                    word_delimiter_token=like.word_delimiter_token, bos_token=None, eos_token=None)
