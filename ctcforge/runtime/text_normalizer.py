"""The one text normaliser of a language repo.

Training, eval.py and the n-gram LM text all use it, so the three can never drift apart.
It depends only on the standard library;
pykakasi (Japanese transliteration) and fugashi (Japanese word split) are imported only
by the profiles that ask for them.

A profile is plain data (`language_profile.json` at the repo's top level: the one place
where a user changes the text rules, which the tool reads too). `Normalizer(profile)` turns it into an ordered list of small steps, each a
callable `str -> str`, applied in turn; `split_words` is separate because it decides
what a "word" is for WER and does not change the text.

The steps, in order: Unicode form, transliteration, removal of ignored characters, casing,
replacement of letter variants, whitespace, the Unicode form again and the replacements again.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from .repo_files import PROFILE_FILE

Step = Callable[[str], str]


class UnicodeForm:
    """Composes text into one Unicode normal form (NFC, or NFKC for full-width forms)."""

    def __init__(self, form: str = "NFC"):
        if form not in ("NFC", "NFKC"):
            raise ValueError(f"unicode_form must be NFC or NFKC, not {form!r}")
        self.form = form

    def __call__(self, text: str) -> str:
        return unicodedata.normalize(self.form, text)


class ToHiragana:
    """Rewrites kanji and katakana as their hiragana reading (pykakasi).

    Kana have one sound each, so a model that writes hiragana needs a few dozen labels
    instead of thousands of kanji; the ja seed model did the same. pykakasi sees only runs
    of kana and kanji: given a tab or newline it repeats the text before it, and it drops
    characters beyond U+FFFF.
    """

    kana_kanji = re.compile("[\u3005\u3006\u3041-\u3096\u309d\u309e\u30a1-\u30fa\u30fc-\u30fe"
                            "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")

    def __call__(self, text: str) -> str:
        return self.kana_kanji.sub(self._reading, text)

    @staticmethod
    def _reading(run: re.Match) -> str:
        return "".join(item["hira"] for item in _kakasi().convert(run.group()))


@lru_cache(maxsize=1)
def _kakasi():
    import pykakasi

    return pykakasi.kakasi()


class RemoveCharacters:
    """Deletes every listed character or character sequence.

    Each entry is escaped and the entries are alternated, longest first, so a `-`, `]`
    or `^` in the list is taken literally and never forms a range or a negation.
    """

    def __init__(self, characters: Sequence[str]):
        entries = sorted({c for c in characters if c}, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(c) for c in entries)) if entries else None

    def __call__(self, text: str) -> str:
        if not self.pattern:
            return text
        # Deleting "ab" from "aabb" leaves a new "ab": repeat until none is left, so that
        # normalising twice changes nothing.
        text, removed = self.pattern.subn("", text)
        while removed:
            text, removed = self.pattern.subn("", text)
        return text


class Lowercase:
    """Lower-cases text; `turkic=True` maps I to dotless ı and İ to i.

    Python's `str.lower()` turns İ (U+0130) into i + U+0307, two code points that NFC
    cannot join again; mapping İ to i first keeps one code point in every profile.
    """

    def __init__(self, turkic: bool = False):
        mapping = {"İ": "i", "I": "ı"} if turkic else {"İ": "i"}
        self.mapped = tuple(mapping)
        self.table = str.maketrans(mapping)

    def __call__(self, text: str) -> str:
        # translate() costs microseconds a line even when it changes nothing, which adds
        # up over a million-sentence LM corpus; looking for the letters first is cheap.
        if any(letter in text for letter in self.mapped):
            text = text.translate(self.table)
        return text.lower()


class ReplaceCharacters:
    """Writes each listed character as another: one spelling per letter.

    Keyboards give one letter several code points: the apostrophe of Swahili ng'ombe is typed
    as ' or ’, Persian yeh as Arabic ي or Persian ی. CTC labels must be one code point each,
    so `{"’": "'"}` maps the variants onto the letter the alphabet lists. Keys are single
    characters; ctcforge checks each profile (ctcforge/languages.py) so that no replacement
    writes a key, an ignored character, a character the casing step changes or text that
    composes with a neighbouring mark where that matters: normalising twice changes nothing.
    """

    def __init__(self, mapping: dict[str, str]):
        self.keys = tuple(mapping)
        self.table = str.maketrans(mapping) if mapping else None

    def __call__(self, text: str) -> str:
        # As in Lowercase: look first, translate only when a key is there.
        if self.table and any(key in text for key in self.keys):
            text = text.translate(self.table)
        return text


class CollapseWhitespace:
    """Turns any run of Unicode whitespace (ideographic space included) into one space."""

    def __call__(self, text: str) -> str:
        # str.split() with no separator splits at runs of what str.isspace() calls
        # whitespace, the same set as the regex \s, and drops them at the ends.
        return " ".join(text.split())


def build_steps(profile: dict) -> list[Step]:
    """The ordered normalisation steps a profile asks for."""
    form = profile.get("unicode_form", "NFC")
    steps: list[Step] = [UnicodeForm(form)]
    if profile.get("transliteration", "none") == "hiragana":
        steps.append(ToHiragana())
    steps.append(RemoveCharacters(profile.get("chars_to_ignore", [])))
    casing = profile.get("casing", "lower")
    if casing == "lower":
        steps.append(Lowercase())
    elif casing == "lower-turkic":
        steps.append(Lowercase(turkic=True))
    elif casing != "keep":
        raise ValueError(f"casing must be lower, lower-turkic or keep, not {casing!r}")
    # After casing, so keys and values are matched as the model writes them (lower case).
    replace = ReplaceCharacters(profile.get("replacements", {}))
    # Deleting characters can bring a base letter next to a combining mark; compose again.
    # Composing can make a key (Chuvash Latin ă from a + breve): replace once more after it.
    steps += [replace, CollapseWhitespace(), UnicodeForm(form), replace]
    return steps


class Normalizer:
    """Callable text normaliser built from a language profile dict."""

    def __init__(self, profile: dict):
        self.profile = profile
        self.steps = build_steps(profile)
        self.word_split = profile.get("word_split", "space")
        if self.word_split not in ("space", "fugashi", "char"):
            raise ValueError(f"word_split must be space, fugashi or char, not {self.word_split!r}")

    def __call__(self, text: str) -> str:
        for step in self.steps:
            text = step(text)
        return text

    def split_words(self, text: str) -> list[str]:
        """The units WER counts: spaces, fugashi morphemes (ja) or characters (zh-HK)."""
        if self.word_split == "char":
            return [c for c in text if not c.isspace()]
        if self.word_split == "fugashi":
            return [word.surface for word in _tagger()(text) if word.surface.strip()]
        return text.split()

    def words_joined(self, text: str) -> str:
        """Text re-spaced by `split_words`, the form jiwer's WER expects."""
        return " ".join(self.split_words(text))


@lru_cache(maxsize=1)
def _tagger():
    import fugashi

    return fugashi.Tagger()


def load(path: str | Path | None = None) -> Normalizer:
    """The normaliser of the repo this package lives in (or of the profile at `path`)."""
    path = Path(path) if path else Path(__file__).resolve().parents[1] / PROFILE_FILE
    return Normalizer(json.loads(path.read_text(encoding="utf-8")))


if __name__ == "__main__":
    import sys

    normalize = load()
    for line in sys.stdin:
        print(normalize(line))
