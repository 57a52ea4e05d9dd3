"""vocab.json: the CTC label set, from a profile's alphabet or from normalised training text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ctcforge.languages import Profile, alphabet_characters
from ctcforge.runtime.atomic import write_text_atomically
from ctcforge.runtime.text_normalizer import Normalizer

WORD_DELIMITER = "|"
UNK = "[UNK]"
PAD = "[PAD]"


def vocab_from_characters(characters: Iterable[str]) -> dict[str, int]:
    """Letters sorted, the space written as the word delimiter, then [UNK] and [PAD]:
    the order the upstream training script uses, so existing checkpoints line up."""
    letters = sorted(set(characters) - {" "} - {WORD_DELIMITER, UNK, PAD})
    tokens = [WORD_DELIMITER] + letters + [UNK, PAD]
    return {token: index for index, token in enumerate(tokens)}


def vocab_from_profile(profile: Profile) -> dict[str, int]:
    return vocab_from_characters(alphabet_characters(profile))


def vocab_from_texts(texts: Iterable[str], normalize: Normalizer) -> dict[str, int]:
    """The characters that occur in the normalised text (training text only: letters seen
    only in the eval split would be labels the model can never learn)."""
    seen: set[str] = set()
    for text in texts:
        seen.update(normalize(text))
    return vocab_from_characters(seen)


def write_vocab(vocab: dict[str, int], path: Path) -> None:
    write_text_atomically(path, json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
