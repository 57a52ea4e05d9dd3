"""Base models: the built-in catalogue (`catalogue.yaml`), local model folders and `tiny`.

The catalogue knows each architecture, so a repo's `config.json`, feature extractor and
tokenizer files are written offline; weights come later, at training time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ctcforge.runtime.atomic import write_text_atomically
from ctcforge.runtime.errors import CtcforgeError
# The repo's training script reads base_model.json through this shipped module.
from ctcforge.runtime.repo_files import BASE_MODEL_FILE, WEIGHT_FILES, has_weights
from ctcforge.runtime.vocabulary import PAD, UNK, WORD_DELIMITER, check_labels, write_vocabulary

CATALOGUE_FILE = Path(str(resources.files("ctcforge") / "catalogue.yaml"))

# family -> (config class, feature extractor class, CTC model class), by transformers name
FAMILIES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2FeatureExtractor", "Wav2Vec2ForCTC"),
    "wav2vec2-bert": ("Wav2Vec2BertConfig", "SeamlessM4TFeatureExtractor", "Wav2Vec2BertForCTC"),
}


@dataclass(frozen=True)
class BaseModel:
    id: str  # catalogue id, "tiny", or a local folder
    family: str
    config: dict  # architecture keyword arguments
    feature_extractor: dict
    description: str = ""
    local_path: Path | None = None
    license: str | None = None  # of the released weights; None when unknown (a local folder)
    training: dict = field(default_factory=dict)  # suggested training-script arguments

    @property
    def pretrained(self) -> bool:
        """Whether training starts from released weights (everything but `tiny`)."""
        return self.id != "tiny"

    @property
    def source(self) -> str:
        """Where the training script gets the starting weights: "scratch" (random), "local"
        (a folder's weights) or "hub" (from_pretrained of the id, from the Hub or its cache)."""
        if not self.pretrained:
            return "scratch"
        return "local" if self.local_path is not None else "hub"

    def record(self) -> dict:
        """What the repo's base_model.json says, for the training script to start from."""
        record = {"id": self.id, "family": self.family, "source": self.source}
        if self.local_path is not None:
            record["path"] = str(self.local_path.resolve())
        return record


def catalogue() -> dict[str, dict]:
    return yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))


def resolve_base_model(name: str) -> BaseModel:
    """A catalogue id, `tiny`, or a local model folder holding a config.json."""
    entries = catalogue()
    if name in entries:
        entry = entries[name]
        return BaseModel(id=name, family=entry["family"], config=dict(entry["config"]),
                         feature_extractor=dict(entry.get("feature_extractor", {})),
                         description=entry.get("description", ""), license=entry.get("license"),
                         training=dict(entry.get("training", {})))
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _local_base_model(folder)
    if looks_like_path(name):
        raise CtcforgeError(f"--base-model {name}: no such folder")
    raise CtcforgeError(f"unknown base model {name!r}: use a local model folder (config.json and "
                        f"weights) or one of {', '.join(entries)} (`ctcforge models` lists them)")


def looks_like_path(name: str) -> bool:
    """A name that cannot be a Hub id (org/name) or a catalogue key."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _local_base_model(folder: Path) -> BaseModel:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CtcforgeError(f"{config_file}: no such file; a base-model folder needs the config.json "
                            "that save_pretrained writes beside the weights")
    if not has_weights(folder):
        raise CtcforgeError(f"{folder} holds no weights ({' or '.join(WEIGHT_FILES[::2])}); save the "
                            "checkpoint with save_pretrained, or use --base-model tiny to train from scratch")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CtcforgeError(f"{config_file}: not JSON ({exc})") from None
    family = config.get("model_type")
    if family not in FAMILIES:
        raise CtcforgeError(f"{folder}/config.json: model_type {family!r} is not supported "
                            f"(supported: {', '.join(FAMILIES)})")
    extractor_file = folder / "preprocessor_config.json"
    extractor = json.loads(extractor_file.read_text(encoding="utf-8")) if extractor_file.is_file() else {}
    for key in ("feature_extractor_type", "processor_class"):
        extractor.pop(key, None)
    # The weights are the suggested training settings' business too: a local checkpoint
    # of a catalogued family is fine-tuned like its family's released ones.
    training = next((entry.get("training", {}) for key, entry in catalogue().items()
                     if entry["family"] == family and key != "tiny"), {})
    return BaseModel(id=str(folder), family=family, config=config, feature_extractor=extractor,
                     local_path=folder, training=dict(training))


def write_model_files(base: BaseModel, vocab: dict[str, int], repo: Path) -> None:
    """config.json, preprocessor_config.json and the tokenizer files for a CTC head over `vocab`."""
    import transformers
    from transformers import Wav2Vec2CTCTokenizer

    config_name, extractor_name, model_name = FAMILIES[base.family]
    settings = {k: v for k, v in base.config.items() if not k.startswith("_") and k not in (
        "model_type", "transformers_version", "architectures")}
    settings.update(vocab_size=len(vocab), pad_token_id=vocab[PAD], architectures=[model_name],
                    ctc_loss_reduction="mean",
                    # A clip with more labels than frames gives an infinite loss that would
                    # turn every weight into NaN; zeroing it costs nothing.
                    ctc_zero_infinity=True)
    getattr(transformers, config_name)(**settings).save_pretrained(repo)
    getattr(transformers, extractor_name)(**base.feature_extractor).save_pretrained(repo)
    write_vocabulary(vocab, repo)
    # bos/eos off: transformers 5 adds <s> and </s> otherwise, and len(tokenizer) would no
    # longer match the model's vocab_size.
    tokenizer = Wav2Vec2CTCTokenizer(str(repo / "vocab.json"), unk_token=UNK, pad_token=PAD,
                                     word_delimiter_token=WORD_DELIMITER, bos_token=None, eos_token=None)
    check_labels(tokenizer, len(vocab), str(repo), every_token=True)
    tokenizer.save_pretrained(repo)
    write_text_atomically(repo / BASE_MODEL_FILE, json.dumps(base.record(), indent=2) + "\n")
