"""The repo's normaliser, as training, eval.py and the LM text all use it."""

import json
import unicodedata

import pytest

from ctcforge_runtime import text_normalizer
from conftest import REPO

normalize = text_normalizer.load()
profile = json.loads((REPO / text_normalizer.PROFILE_FILE).read_text(encoding="utf-8"))
vocab = json.loads((REPO / "vocab.json").read_text(encoding="utf-8"))
letters = [token for token in vocab if len(token) == 1 and token != "|"]


def sample_text():
    """A sentence made of the vocabulary's own letters, with every ignored character."""
    words = ["".join(letters[i:i + 4]) for i in range(0, min(len(letters), 40), 4)]
    return " ".join(words) + " " + " ".join(profile["chars_to_ignore"])


def test_ignored_characters_are_removed():
    text = sample_text()
    cleaned = normalize(text)
    for char in profile["chars_to_ignore"]:
        assert char not in cleaned


def test_normalising_twice_changes_nothing():
    once = normalize(sample_text())
    assert normalize(once) == once


def test_output_is_composed_and_single_spaced():
    out = normalize("  " + sample_text() + "\t\n ")
    assert out == unicodedata.normalize(profile.get("unicode_form", "NFC"), out)
    assert "  " not in out and out == out.strip()


@pytest.mark.parametrize("letter", letters[:200])
def test_vocabulary_letters_survive_normalisation(letter):
    # A letter the normaliser rewrites could never appear in a training label.
    assert normalize(letter) == letter


def test_word_split_gives_tokens_without_spaces():
    words = normalize.split_words(normalize(sample_text()))
    assert words and all(" " not in w for w in words)
