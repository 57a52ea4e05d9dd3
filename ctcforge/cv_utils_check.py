"""A second opinion on a profile's alphabet: the validation data of commonvoice-utils.

commonvoice-utils (PyPI, AGPL) ships, for about a hundred Common Voice locales, the letters
Common Voice's linguists allow in a transcript (its `Validator(locale).alphabet`). It is a
test-only dependency: ctcforge reads it when it is installed, copies none of it, and works
without it.

The two agree when every letter it allows is one our normaliser writes into the alphabet
(a letter we spell another way through `replacements`, or one it lower-cases, counts) or
removes as a character to ignore. Where we differ on purpose, the profile says so in
`cv_utils_exceptions`, one reason per letter; an exception that no longer differs is
reported too, so the list cannot go stale.
"""

from __future__ import annotations

import contextlib
import io
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from ctcforge.languages import Profile, alphabet_characters


@dataclass(frozen=True)
class Comparison:
    """How a profile fares against commonvoice-utils' letters for its locale."""

    differing: tuple[str, ...]  # letters it allows that we neither write nor remove, unexplained
    stale_exceptions: tuple[str, ...]  # exceptions in the profile that agree after all

    @property
    def agrees(self) -> bool:
        return not self.differing and not self.stale_exceptions


@lru_cache(maxsize=1)
def _cvutils():
    """The installed package, or None."""
    try:
        import cvutils
    except ImportError:
        return None
    return cvutils


def is_installed() -> bool:
    return _cvutils() is not None


@lru_cache(maxsize=1)
def covered_locales() -> frozenset[str]:
    """The locales commonvoice-utils has validation data for (empty when not installed)."""
    package = _cvutils()
    return frozenset(package.CV().supported["validator"]) if package else frozenset()


@lru_cache(maxsize=None)
def _validator(locale: str):
    # Its Validator prints to stdout as it loads; none of that is ours to show.
    with contextlib.redirect_stdout(io.StringIO()):
        return _cvutils().Validator(locale)


def allowed_letters(locale: str) -> tuple[str, ...]:
    """The characters commonvoice-utils allows in a `locale` transcript: its alphabet, less
    the space and the characters whose sentences it rejects (`SKIP`, as Russian ы for uk)."""
    validator = _validator(locale)
    return tuple(dict.fromkeys(c for c in validator.alphabet if c.strip() and c not in validator.skip))


def decomposed_marks(profile: Profile) -> set[str]:
    """The combining marks inside the alphabet's letters once decomposed (NFKD)."""
    return {mark for letter in alphabet_characters(profile) for mark in unicodedata.normalize("NFKD", letter)
            if unicodedata.combining(mark)}


def compare(profile: Profile) -> Comparison | None:
    """The comparison for `profile`, or None when commonvoice-utils is not installed or has no
    data for its locale."""
    if profile.code not in covered_locales():
        return None
    normalize = profile.normalizer()
    alphabet = set(alphabet_characters(profile))
    # A validator that decomposes its text (vi) allows the tone marks our NFC letters hold.
    held = decomposed_marks(profile) if _validator(profile.code).nfkd else set()
    outside = [c for c in allowed_letters(profile.code) if not set(normalize(c)) <= alphabet and c not in held]
    return Comparison(differing=tuple(c for c in outside if c not in profile.cv_utils_exceptions),
                      stale_exceptions=tuple(c for c in profile.cv_utils_exceptions if c not in outside))


def verdict(profile: Profile) -> str:
    """One word for `ctcforge languages`: agrees, differs, no data, or not checked."""
    if not is_installed():
        return "not checked"
    comparison = compare(profile)
    if comparison is None:
        return "no data"
    if comparison.agrees:
        count = len(profile.cv_utils_exceptions)
        return f"agrees ({count} exception{'s' * (count != 1)})" if count else "agrees"
    return "differs: " + " ".join(comparison.differing + comparison.stale_exceptions)
