"""The decoder side of a repo's LM: the alphabet, the LM folder pyctcdecode loads, and the
preprocessor entry that makes transformers' ASR pipeline load them.

pyctcdecode (`BeamSearchDecoderCTC.load_from_dir(repo)`) wants `alphabet.json` in the repo
root (`{"labels": [...], "is_bpe": false}`, one label per model output id) and a
`language_model/` folder of exactly three files: `attrs.json` (alpha, beta,
unk_score_offset, score_boundary), `unigrams.txt` (one word a line) and one KenLM file
(.arpa, .bin or .binary); hidden files are ignored, any other file is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from ctcforge.runtime.atomic import replacing
from ctcforge.runtime.beam_search import (DEFAULT_SCORE_BOUNDARY, DEFAULT_UNK_SCORE_OFFSET, ctc_labels,
                                          decoder_alphabet, lm_dir_problems, load_beam_decoder)
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import ALPHABET_FILE, ATTRS_FILE, CONFIG_FILE, LANGUAGE_MODEL_DIR, PREPROCESSOR_FILE
from ctcforge.runtime.text_normalizer import Normalizer
from ctcforge.runtime.vocabulary import check_labels

KENLM_FILE = "lm.binary"
# transformers 5's Wav2Vec2ProcessorWithLM.save_pretrained writes this file, and with it
# the ASR pipeline no longer finds the processor class and silently decodes greedily.
NESTED_PROCESSOR_FILE = "processor_config.json"
LM_PROCESSOR_CLASS = "Wav2Vec2ProcessorWithLM"


# ---------------------------------------------------------------------------- the alphabet


def decoder_labels(repo: Path, normalize: Normalizer) -> list[str]:
    """pyctcdecode's labels for the repo's model, after checking that the tokenizer and the
    model's vocab_size agree label for label (`vocabulary.check_labels`, as transformers' LM
    processor needs: every token an output) and that the normaliser leaves every label be."""
    from transformers import AutoTokenizer

    vocab_size = model_vocab_size(repo)
    tokenizer = AutoTokenizer.from_pretrained(str(repo))
    check_labels(tokenizer, vocab_size, str(repo), every_token=True)
    labels = ctc_labels(tokenizer, vocab_size, str(repo))  # the labels eval.py's decoder is built from
    problems = case_problems(labels, normalize)
    if problems:
        raise CtcforgeError(f"{repo}: {'; '.join(problems)}")
    normalized = decoder_alphabet(labels)  # what loading checks alphabet.json against
    if len(normalized) != vocab_size:
        raise CtcforgeError(f"{repo}: pyctcdecode made {len(normalized)} labels of the {vocab_size} model outputs "
                            f"(it adds a blank when none of {labels!r} is one)")
    return normalized


def model_vocab_size(repo: Path) -> int:
    config_path = repo / CONFIG_FILE
    try:
        return int(json.loads(config_path.read_text(encoding="utf-8"))["vocab_size"])
    except (OSError, KeyError, ValueError) as exc:
        raise CtcforgeError(f"{config_path}: no readable vocab_size ({exc})") from exc


def case_problems(labels: list[str], normalize: Normalizer) -> list[str]:
    """Single letters the normaliser changes (an upper-case letter under a lower-casing
    profile): the LM text never holds them, so words spelt with them never score."""
    changed = [label for label in labels if len(label) == 1 and not label.isspace() and normalize(label) != label]
    if not changed:
        return []
    return [f"the vocabulary holds {', '.join(repr(c) for c in changed)}, which the repo normaliser rewrites "
            f"({', '.join(repr(normalize(c)) for c in changed)}), so no LM word can contain them"]


def write_alphabet(labels: list[str], repo: Path) -> Path:
    path = repo / ALPHABET_FILE
    path.write_text(json.dumps({"labels": labels, "is_bpe": False}, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- language_model/


def write_attrs(lm_dir: Path, alpha: float, beta: float) -> None:
    """attrs.json with the LM weights and pyctcdecode's defaults for the rest."""
    attrs = {"alpha": float(alpha), "beta": float(beta), "unk_score_offset": DEFAULT_UNK_SCORE_OFFSET,
             "score_boundary": DEFAULT_SCORE_BOUNDARY}
    (lm_dir / ATTRS_FILE).write_text(json.dumps(attrs, indent=1) + "\n", encoding="utf-8")


def read_attrs(lm_dir: Path) -> dict:
    return json.loads((lm_dir / ATTRS_FILE).read_text(encoding="utf-8"))


def update_attrs(lm_dir: Path, alpha: float, beta: float) -> None:
    """New weights in an existing attrs.json, its other settings kept."""
    attrs = {**read_attrs(lm_dir), "alpha": float(alpha), "beta": float(beta)}
    # The temporary file outside the folder: it must hold 3 files at every moment.
    with replacing(lm_dir / ATTRS_FILE, beside=lm_dir.parent) as temporary:
        temporary.write_text(json.dumps(attrs, indent=1) + "\n", encoding="utf-8")


def check_language_model_dir(repo: Path) -> None:
    """Raises a CtcforgeError naming what is missing or extra in the layout pyctcdecode
    loads: alphabet.json beside language_model/{attrs.json, unigrams.txt, one KenLM file}."""
    repo = Path(repo)
    lm_dir = repo / LANGUAGE_MODEL_DIR
    problems = []
    if not (repo / ALPHABET_FILE).is_file():
        problems.append(f"{ALPHABET_FILE} is missing from {repo}")
    if not lm_dir.is_dir():
        problems.append(f"{lm_dir} is missing")
    else:
        problems += lm_dir_problems(lm_dir)
    if problems:
        raise CtcforgeError("; ".join(problems))


def load_repo_decoder(repo: Path, beam_search=None, engine: str | None = None):
    """The repo's LM decoder as eval.py loads it (`beam_search.load_beam_decoder`: its
    alphabet checked against the tokenizer label by label, its KenLM file loadable), by
    ctcforge's beam_search or the given module (the repo's own copy); `engine` names one
    decoder package, for the benchmark."""
    from transformers import AutoTokenizer

    load = beam_search.load_beam_decoder if beam_search is not None else load_beam_decoder
    try:
        return load(str(repo), AutoTokenizer.from_pretrained(str(repo)), model_vocab_size(repo), engine=engine)
    except CtcforgeError as exc:
        raise CtcforgeError(f"{repo}: {exc}") from None


# ---------------------------------------------------------------------------- transformers


def declare_lm_processor(repo: Path) -> list[str]:
    """Makes `pipeline("automatic-speech-recognition", model=repo)` decode with the LM on
    transformers 5: preprocessor_config.json names Wav2Vec2ProcessorWithLM, and no
    processor_config.json stands beside it. Written by hand, since
    Wav2Vec2ProcessorWithLM.save_pretrained writes the nested file that turns the LM off.
    Returns notes on what was changed."""
    notes = []
    path = repo / PREPROCESSOR_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("processor_class") != LM_PROCESSOR_CLASS:
        config["processor_class"] = LM_PROCESSOR_CLASS
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        notes.append(f"{PREPROCESSOR_FILE}: processor_class set to {LM_PROCESSOR_CLASS}")
    nested = repo / NESTED_PROCESSOR_FILE
    if nested.exists():
        nested.unlink()
        notes.append(f"removed {NESTED_PROCESSOR_FILE}: with it, transformers 5's ASR pipeline ignores the "
                     "LM and decodes greedily")
    return notes
