"""Base models: the built-in catalogue (`catalogue.yaml`), local model folders and `tiny`.

The catalogue knows each architecture, so a repo's `config.json`, feature extractor and
tokenizer files are written offline; weights come later, at training time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ctcforge.errors import CtcforgeError
from ctcforge.vocab import PAD, UNK, WORD_DELIMITER, write_vocab

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

    @property
    def pretrained(self) -> bool:
        """Whether training starts from released weights (everything but `tiny`)."""
        return self.id != "tiny"


def catalogue() -> dict[str, dict]:
    return yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))


def resolve_base_model(name: str) -> BaseModel:
    """A catalogue id, `tiny`, or a local model folder holding a config.json."""
    entries = catalogue()
    if name in entries:
        entry = entries[name]
        return BaseModel(id=name, family=entry["family"], config=dict(entry["config"]),
                         feature_extractor=dict(entry.get("feature_extractor", {})),
                         description=entry.get("description", ""))
    folder = Path(name)
    if (folder / "config.json").is_file():
        return _local_base_model(folder)
    raise CtcforgeError(f"unknown base model {name!r}: use a folder with a config.json or one of "
                        f"{', '.join(entries)}")


def _local_base_model(folder: Path) -> BaseModel:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    family = config.get("model_type")
    if family not in FAMILIES:
        raise CtcforgeError(f"{folder}/config.json: model_type {family!r} is not supported "
                            f"(supported: {', '.join(FAMILIES)})")
    extractor_file = folder / "preprocessor_config.json"
    extractor = json.loads(extractor_file.read_text(encoding="utf-8")) if extractor_file.is_file() else {}
    for key in ("feature_extractor_type", "processor_class"):
        extractor.pop(key, None)
    return BaseModel(id=str(folder), family=family, config=config, feature_extractor=extractor,
                     local_path=folder)


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
    write_vocab(vocab, repo / "vocab.json")
    # bos/eos off: transformers 5 adds <s> and </s> otherwise, and len(tokenizer) would no
    # longer match the model's vocab_size.
    tokenizer = Wav2Vec2CTCTokenizer(str(repo / "vocab.json"), unk_token=UNK, pad_token=PAD,
                                     word_delimiter_token=WORD_DELIMITER, bos_token=None, eos_token=None)
    if len(tokenizer) != len(vocab):
        raise CtcforgeError(f"tokenizer has {len(tokenizer)} tokens but vocab.json {len(vocab)}")
    tokenizer.save_pretrained(repo)
