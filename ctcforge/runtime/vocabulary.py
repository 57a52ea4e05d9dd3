"""vocab.json, the CTC label set: its one builder, its reader and writer, the label check
every loader runs, and the choice a training run makes.

`ctcforge new` builds a repo's vocabulary from its profile's alphabet (or a dataset's text);
a training run from the training text only (a letter seen only in the test split is a label
the model could never learn), unless one is given or the model folder's already covers that
text; resuming keeps the one the checkpoint was trained with. Every one is built by
`vocabulary_of`, in the upstream order, so the labels of one language always line up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from .atomic import write_text_atomically
from .errors import CtcforgeError
from .repo_files import VOCAB_FILE

logger = logging.getLogger(__name__)

# The special tokens of the 2022 recipe, the training script's defaults.
WORD_DELIMITER = "|"
UNK = "[UNK]"
PAD = "[PAD]"


def vocabulary_of(characters: Iterable[str], word_delimiter: str = WORD_DELIMITER, unk: str = UNK,
                  pad: str = PAD) -> dict[str, int]:
    """The upstream order: the word delimiter (for the space) and the letters sorted, then
    the unknown and padding tokens, so checkpoints trained upstream line up."""
    letters = sorted(set(characters) - {" "} - {word_delimiter, unk, pad})
    tokens = [word_delimiter, *letters, unk, pad]
    return {token: index for index, token in enumerate(tokens)}


def characters_of(texts: Iterable[str], normalize: Callable[[str], str]) -> set[str]:
    """The characters of the normalised texts."""
    seen: set[str] = set()
    for text in texts:
        seen.update(normalize(text))
    return seen


def read_vocabulary(folder: str | Path) -> dict[str, int] | None:
    vocab_file = Path(folder) / VOCAB_FILE
    if not vocab_file.is_file():
        return None
    return json.loads(vocab_file.read_text(encoding="utf-8"))


def write_vocabulary(vocab: dict[str, int], folder: str | Path) -> Path:
    """Written aside and renamed into place: with output_dir ./ this is the model folder's
    vocab.json, which the other processes of a distributed run may be reading."""
    path = Path(folder) / VOCAB_FILE
    write_text_atomically(path, json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
    return path


def label_problems(token_of_id: dict[int, str], vocab_size: int, pad: str | None, delimiter: str | None,
                   every_token: bool) -> list[str]:
    """What keeps a tokenizer's labels from naming a model's `vocab_size` outputs: output
    ids without a token and a blank (the pad token) that is no output; with `every_token`,
    as transformers' LM processor and a decoder alphabet need, also tokens the model never
    writes and a word delimiter that is no output."""
    problems = []
    unnamed = [i for i in range(vocab_size) if i not in token_of_id]
    if unnamed:
        problems.append(f"output ids {', '.join(map(str, unnamed[:10]))} have no token in vocab.json")
    outputs = {token for index, token in token_of_id.items() if index < vocab_size}
    if pad is None or pad not in outputs:
        problems.append(f"the pad token {pad!r}, the CTC blank, is not among the model's outputs")
    if every_token:
        unwritable = sorted((i, t) for i, t in token_of_id.items() if i >= vocab_size)
        if unwritable:
            problems.append(f"the tokenizer has {len(token_of_id)} tokens, and the model never writes "
                            f"{', '.join(f'{t!r} (id {i})' for i, t in unwritable)}; transformers 5 adds <s> "
                            "and </s> to a Wav2Vec2CTCTokenizer unless tokenizer_config.json sets bos_token and "
                            "eos_token to null")
        if delimiter is None or delimiter not in outputs:
            problems.append(f"the word delimiter {delimiter!r} is not among the model's outputs")
    return problems


def check_labels(tokenizer, vocab_size: int, where: str, every_token: bool = False) -> dict[int, str]:
    """The tokenizer's token of every output id of a model with `vocab_size` outputs, once
    they are found to fit (`label_problems`); else one CtcforgeError naming every mismatch:
    a shifted label would shift every transcript. The one label check of ctcforge."""
    token_of_id = {index: token for token, index in tokenizer.get_vocab().items()}
    problems = label_problems(token_of_id, vocab_size, tokenizer.pad_token,
                              getattr(tokenizer, "word_delimiter_token", None), every_token)
    if problems:
        raise CtcforgeError(f"{where}: the labels (vocab.json, the tokenizer) do not fit config.json's vocab_size "
                            f"{vocab_size}: {'; '.join(problems)}")
    return token_of_id


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
        logger.info(f"Vocabulary: {resuming_in / VOCAB_FILE} (resuming)")
        return vocab
    if model_args.tokenizer_name_or_path:
        tokenizer_folder = Path(model_args.tokenizer_name_or_path)
        vocab = read_vocabulary(tokenizer_folder)
        if vocab is None:
            raise CtcforgeError(f"no {VOCAB_FILE} in --tokenizer_name_or_path {tokenizer_folder}")
        logger.info(f"Vocabulary: {tokenizer_folder / VOCAB_FILE} (--tokenizer_name_or_path)")
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
            logger.info(f"Vocabulary: {model_folder / VOCAB_FILE} (covers the training text)")
            return model_vocab
        logger.warning(
            f"{model_folder / VOCAB_FILE} lacks {' '.join(missing)}: "
            "building the vocabulary from the training text instead."
        )
    vocab = vocabulary_of(training_characters, data_args.word_delimiter_token, data_args.unk_token,
                          data_args.pad_token)
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


def create_tokenizer(vocab: dict[str, int], output_dir: Path, data_args, write: bool = True):
    """A CTC tokenizer over exactly the labels of `vocab`, saved as output_dir/vocab.json
    (by the process that `write`s it; the others read it)."""
    missing = missing_special_tokens(vocab, data_args)
    if missing:
        raise CtcforgeError(
            f"the vocabulary has no {' '.join(missing)}; set --word_delimiter_token, "
            "--unk_token and --pad_token to the special tokens it uses."
        )
    from transformers import Wav2Vec2CTCTokenizer

    vocab_file = output_dir / VOCAB_FILE
    if write:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_vocabulary(vocab, output_dir)
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
    check_labels(tokenizer, len(vocab), str(vocab_file), every_token=True)
    return tokenizer
