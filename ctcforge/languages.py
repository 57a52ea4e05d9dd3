"""Language profiles: one YAML file per language in `ctcforge/languages/`, validated here.

Adding a language means adding a file; nothing in the code names a language.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ctcforge.datafile import check_mapping, field_error, read_yaml
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.text_normalizer import Lowercase, Normalizer

PROFILE_DIR = Path(str(resources.files("ctcforge") / "profiles"))

CASINGS = ("lower", "lower-turkic", "keep")
TRANSLITERATIONS = ("none", "hiragana")
WORD_SPLITS = ("space", "fugashi", "char")
METRICS = ("wer", "cer")
UNICODE_FORMS = ("NFC", "NFKC")
ISO639 = re.compile(r"[a-z]{2,3}")
ISO639_3 = re.compile(r"[a-z]{3}")
RANGE = re.compile(r"U\+([0-9A-Fa-f]{4,6})-U\+([0-9A-Fa-f]{4,6})")


@dataclass(frozen=True)
class Profile:
    code: str  # Common Voice locale, e.g. "hy-AM"
    name: str  # English name, e.g. "Armenian"
    script: str  # Unicode script of the letters, e.g. "Armenian", "Han", "Hiragana"
    alphabet: str  # every letter the model may write, after normalisation
    # Scripts too large to list (Han) add code-point ranges such as "U+4E00-U+9FFF".
    alphabet_ranges: list[str] = field(default_factory=list)
    chars_to_ignore: list[str] = field(default_factory=list)
    # One character written as another after casing (’ -> ' in sw, Arabic ي -> Persian ی in fa),
    # so every spelling of a letter reaches the one label the alphabet lists.
    replacements: dict[str, str] = field(default_factory=dict)
    casing: str = "lower"
    transliteration: str = "none"
    word_split: str = "space"
    unicode_form: str = "NFC"
    espeak_voice: str | None = None
    metrics: list[str] = field(default_factory=lambda: ["wer", "cer"])
    # The ISO 639 code a model card's `language:` holds, where it is not the part of the
    # locale before "-" (Common Voice's zh-HK is Cantonese: yue). Optional, so a new
    # profile needs it only when that rule gets its language wrong.
    hub_language: str | None = None
    # Letters commonvoice-utils' validation data allows that this profile writes otherwise on
    # purpose (letter -> why), so the second opinion (ctcforge/cv_utils_check.py) agrees.
    cv_utils_exceptions: dict[str, str] = field(default_factory=dict)
    # The ISO 639-3 code of the spoken language: the name of an MMS language adapter
    # (adapter.<code>.safetensors) and of the training script's --target_language. Where the
    # locale's ISO 639-1 code is a macrolanguage, the individual language Common Voice
    # records (fa: pes, sw: swh, ne-NP: npi, zh-HK: yue).
    iso639_3: str | None = None

    @property
    def iso_language(self) -> str:
        """The Hub's `language:` code: ISO 639 (hy for hy-AM), as the Hub filters on."""
        return self.hub_language or self.code.split("-")[0].lower()

    @property
    def headline_metric(self) -> str:
        """The metric the card leads with: the first listed (cer for zh-HK)."""
        return self.metrics[0]

    def to_dict(self) -> dict:
        return asdict(self)

    def normalizer(self) -> Normalizer:
        return Normalizer(self.to_dict())


def available_codes() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(code: str) -> Profile:
    """The profile for a Common Voice locale; unknown codes get the closest matches."""
    codes = available_codes()
    by_lower = {c.lower(): c for c in codes}
    if code.lower() not in by_lower:
        raise CtcforgeError(f"unknown language {code!r}; closest profiles: {', '.join(_closest(code, codes))}"
                            f" (all: ctcforge languages)")
    return load_profile_file(PROFILE_DIR / f"{by_lower[code.lower()]}.yaml")


def _closest(code: str, codes: list[str]) -> list[str]:
    prefix = [c for c in codes if c.lower().split("-")[0] == code.lower().split("-")[0]]
    fuzzy = difflib.get_close_matches(code, codes, n=3, cutoff=0.0)
    return list(dict.fromkeys(prefix + fuzzy))[:3]


def load_profile_file(path: Path) -> Profile:
    return profile_from_dict(read_yaml(path, "profile"), source=str(path))


def profile_from_dict(data: object, source: str) -> Profile:
    """Validates raw profile data; errors name the file and the field."""

    fail = field_error(source)
    data = check_mapping(data, source, "profile", set(Profile.__dataclass_fields__))
    for required in ("code", "name", "script"):
        if not isinstance(data.get(required), str) or not data[required].strip():
            raise fail(required, "required, a non-empty string")
    if Path(source).suffix == ".yaml" and Path(source).stem != data["code"]:
        raise fail("code", f"{data['code']!r} does not match the file name {Path(source).name!r}")
    if not isinstance(data.get("alphabet", ""), str):
        raise fail("alphabet", "must be a string of letters")
    ranges = data.get("alphabet_ranges", [])
    if not isinstance(ranges, list) or not all(isinstance(r, str) and RANGE.fullmatch(r) for r in ranges):
        raise fail("alphabet_ranges", 'must be a list like ["U+4E00-U+9FFF"]')
    if not data.get("alphabet", "").strip() and not ranges:
        raise fail("alphabet", "required: the letters (or alphabet_ranges) the model writes")
    choices = {"casing": CASINGS, "transliteration": TRANSLITERATIONS, "word_split": WORD_SPLITS,
               "unicode_form": UNICODE_FORMS}
    for key, allowed in choices.items():
        if key in data and data[key] not in allowed:
            raise fail(key, f"{data[key]!r} is not one of {', '.join(allowed)}")
    ignore = data.get("chars_to_ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(c, str) and c for c in ignore):
        raise fail("chars_to_ignore", "must be a list of non-empty strings")
    _check_replacements(data, fail)
    metrics = data.get("metrics", ["wer", "cer"])
    if not isinstance(metrics, list) or not metrics or not set(metrics) <= set(METRICS):
        raise fail("metrics", f"must be a non-empty list drawn from {', '.join(METRICS)}")
    hub_language = data.get("hub_language")
    if hub_language is not None and not (isinstance(hub_language, str) and ISO639.fullmatch(hub_language)):
        raise fail("hub_language", f"must be an ISO 639 code of 2 or 3 lower-case letters (e.g. yue), "
                                   f"got {hub_language!r}")
    exceptions = data.get("cv_utils_exceptions", {})
    if not isinstance(exceptions, dict) or not all(isinstance(k, str) and k and isinstance(v, str) and v.strip()
                                                   for k, v in exceptions.items()):
        raise fail("cv_utils_exceptions", 'must map each letter to the reason we differ, e.g. {"ы": "Russian"}')
    iso639_3 = data.get("iso639_3")
    if iso639_3 is not None and not (isinstance(iso639_3, str) and ISO639_3.fullmatch(iso639_3)):
        raise fail("iso639_3", f"must be an ISO 639-3 code of 3 lower-case letters (e.g. hye), got {iso639_3!r}")
    voice = data.get("espeak_voice")
    if voice is not None and not isinstance(voice, str):
        raise fail("espeak_voice", "must be a voice name or null")
    profile = Profile(**data)
    _check_alphabet(profile, fail)
    return profile


def _check_replacements(data: dict, fail) -> None:
    """Replacements that keep the normaliser idempotent: a second pass must change nothing."""
    mapping = data.get("replacements", {})
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                for k, v in mapping.items()):
        raise fail("replacements", 'must map characters to non-empty strings, e.g. {"’": "\'"}')
    form = data.get("unicode_form", "NFC")
    casing = data.get("casing", "lower")
    lower = (lambda t: t) if casing == "keep" else Lowercase(turkic=casing == "lower-turkic")
    ignored = set(data.get("chars_to_ignore", []))
    for key, value in mapping.items():
        if len(key) != 1:
            raise fail("replacements", f"{key!r}: a key must be one character")
        if unicodedata.normalize(form, key) != key:
            raise fail("replacements", f"{key!r} (U+{ord(key):04X}) is not {form} text: the step never sees it")
        if key in ignored:
            raise fail("replacements", f"{key!r} is also in chars_to_ignore, which removes it first")
        if lower(key) != key:
            raise fail("replacements", f"{key!r} is changed by casing {casing!r} before replacement")
        written = [k for k in mapping if k in value]
        if written or any(c in ignored for c in value) or lower(value) != value \
                or unicodedata.normalize(form, value) != value:
            raise fail("replacements", f"{key!r} -> {value!r}: the replacement must be {form} text that "
                                       f"casing keeps, holding no key and no ignored character")
        # A key that decomposes (Latin ă = a + U+0306) can be made by the final composition,
        # so the step runs once more after it, and that output is not composed again: its
        # value must neither start with a mark nor compose with a mark that follows it.
        if unicodedata.decomposition(key)[:1] not in ("", "<"):
            joined = [m for m in _marks()
                      if unicodedata.normalize(form, value + m) != value + unicodedata.normalize(form, m)]
            if value[0] in _marks() or joined:
                raise fail("replacements", f"{key!r} -> {value!r}: a key that decomposes needs a value that "
                                           f"cannot compose with its neighbours"
                                           + (f" (U+{ord(joined[0]):04X} follows)" if joined else ""))


@lru_cache(maxsize=1)
def _marks() -> tuple[str, ...]:
    """Every combining mark of the BMP (categories Mn and Mc: Indic vowel signs compose too)."""
    return tuple(chr(cp) for cp in range(0x300, 0x10000) if unicodedata.category(chr(cp)) in ("Mn", "Mc"))


def _check_alphabet(profile: Profile, fail) -> None:
    """The alphabet must already be normalised text, else vocab.json would hold letters
    the normaliser never produces."""
    normalize = Normalizer({**profile.to_dict(), "transliteration": "none"})
    # Raw letters, not NFC-composed ones: a letter Unicode never composes to (য়) must fail.
    letters = [c for c in profile.alphabet if not c.isspace()]
    changed = [c for c in letters if normalize(c) != c]
    if changed:
        raise fail("alphabet", f"holds characters the normaliser changes: {''.join(changed[:20])}")
    overlap = [c for c in letters if c in profile.chars_to_ignore]
    if overlap:
        raise fail("alphabet", f"holds ignored characters: {''.join(overlap[:20])}")


def alphabet_characters(profile: Profile) -> list[str]:
    """The distinct letters of the alphabet, listed ones first, then the ranges."""
    letters = [c for c in profile.alphabet if not c.isspace()]
    for entry in profile.alphabet_ranges:
        start, end = (int(h, 16) for h in RANGE.fullmatch(entry).groups())
        letters += [chr(cp) for cp in range(start, end + 1)]
    return list(dict.fromkeys(letters))
