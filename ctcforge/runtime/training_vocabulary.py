"""The label set a training run uses, and the CTC tokenizer over it.

This file is copied unchanged into every generated repo, where run_speech_recognition_ctc.py
imports it. The vocabulary comes from the training text only (a letter seen only in the
test split is a label the model could never learn), unless one is given or the model
folder's already covers that text; resuming keeps the one the checkpoint was trained with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import Wav2Vec2CTCTokenizer

from .atomic import write_text_atomically
from .errors import CtcforgeError

logger = logging.getLogger(__name__)


def build_vocabulary(characters: set[str], data_args) -> dict[str, int]:
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


def missing_special_tokens(vocab: dict[str, int], data_args) -> list[str]:
    tokens = (data_args.word_delimiter_token, data_args.unk_token, data_args.pad_token)
    return [token for token in tokens if token not in vocab]


def choose_vocabulary(
    model_args,
    data_args,
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
            raise CtcforgeError(f"no vocab.json in --tokenizer_name_or_path {tokenizer_folder}")
        logger.info(f"Vocabulary: {tokenizer_folder / 'vocab.json'} (--tokenizer_name_or_path)")
        return vocab
    model_folder = Path(model_args.model_name_or_path)
    model_vocab = read_vocabulary(model_folder)
    if training_characters is None:
        if model_vocab is None:
            raise CtcforgeError(
                "without a training split the vocabulary must come from the model folder "
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
                                           data_args) -> None:
    """A vocabulary taken as given (resuming, --tokenizer_name_or_path) may lack letters of
    the training text; they are trained as [UNK], which is worth knowing."""
    missing = uncovered_characters(vocab, characters or set(), data_args.word_delimiter_token)
    if missing:
        logger.warning(f"The training text holds {''.join(sorted(missing))!r}, which the vocabulary "
                       f"lacks: those characters are learnt as {data_args.unk_token}.")


def create_tokenizer(
    vocab: dict[str, int], output_dir: Path, data_args, write: bool = True
) -> Wav2Vec2CTCTokenizer:
    """A CTC tokenizer over exactly the labels of `vocab`, saved as output_dir/vocab.json
    (by the process that `write`s it; the others read it)."""
    missing = missing_special_tokens(vocab, data_args)
    if missing:
        raise CtcforgeError(
            f"the vocabulary has no {' '.join(missing)}; set --word_delimiter_token, "
            "--unk_token and --pad_token to the special tokens it uses."
        )
    vocab_file = output_dir / "vocab.json"
    if write:
        output_dir.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed into place: with output_dir ./ this is the model folder's
        # vocab.json, which the other processes of a distributed run may be reading.
        write_text_atomically(vocab_file, json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
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
        raise CtcforgeError(f"the tokenizer has {len(tokenizer)} labels but vocab.json {len(vocab)}")
    return tokenizer
