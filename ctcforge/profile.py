"""Drafting a profile for a language ctcforge does not ship, from the language's own text:
`ctcforge profile LANG --from-text FILE... | --from-release DIR`.

Every character of the text is counted and sorted by its Unicode general category and
script. The letters and marks of the text's main script become the proposed alphabet (a
modifier letter such as Uzbek ʻ or Ukrainian ʼ joins them when it is written inside words);
punctuation, symbols and invisible format characters are proposed for `chars_to_ignore`;
digits and letters of other scripts are flagged, for a person to decide. The casing rule,
Unicode form and word split follow from what the text holds, and the espeak-ng voice from
`espeak-ng --voices`. The result is a commented YAML file in the schema of
`ctcforge/languages/`, checked by `profiles.profile_from_dict` before it is written, which
`ctcforge new --profile FILE` stamps a repo from once someone who knows the language has
read it.

A character's script is read from its Unicode name, whose first word names the script for
the letters of every script Common Voice writes (LATIN SMALL LETTER H WITH STROKE, ETHIOPIC
SYLLABLE HA); the standard library has no Script property.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ctcforge.languages import Profile, profile_from_dict
from ctcforge.lm_text import text_file_lines
from ctcforge.runtime.atomic import write_text_atomically
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.text_normalizer import Normalizer
from ctcforge.synth import installed_voices, voice_for_locale

# Names whose script is not their first word alone.
SCRIPT_PREFIXES = {"CJK": "Han", "COMBINING": "Inherited", "MODIFIER": "Common", "FULLWIDTH": "Common",
                   "HALFWIDTH": "Common", "CANADIAN SYLLABICS": "Canadian_Aboriginal", "OL CHIKI": "Ol_Chiki",
                   "TAI THAM": "Tai_Tham", "TAI LE": "Tai_Le", "NEW TAI LUE": "New_Tai_Lue",
                   "TAI VIET": "Tai_Viet", "MEETEI MAYEK": "Meetei_Mayek", "SYLOTI NAGRI": "Syloti_Nagri",
                   "HANIFI ROHINGYA": "Hanifi_Rohingya"}
# Files of a Common Voice locale folder that hold its sentences, the fullest first.
RELEASE_SENTENCE_FILES = ("validated_sentences.tsv", "validated.tsv")
RELEASE_SPLIT_FILES = ("train.tsv", "dev.tsv", "test.tsv")
# Below this share of lines with a space, the language is taken to write no spaces (th, lo).
SPACED_LINES = 0.5
# The invisible joiners that shape Arabic and Indic letters without changing what is said.
JOINERS = ("\u200c", "\u200d")
EXAMPLES = 3
PLAIN_LETTERS = ("Ll", "Lu", "Lt", "Lo")
RARE = 2  # an alphabet letter seen this often or less is pointed out: a typo, or a letter of loans?
RARE_CHECK_LINES = 500  # in a text this long at least; in a shorter one every letter is rare

ROLES = {
    "letter": "alphabet",
    "ignored": "chars_to_ignore",
    "digit": "flagged: digit (kept, outside the alphabet)",
    "foreign": "flagged: another script (kept, outside the alphabet)",
    "space": "word separator",
}


@dataclass(frozen=True)
class CharacterUse:
    """One character of the text (after the drafted Unicode form) and what the draft did with it."""

    character: str
    count: int
    category: str  # Unicode general category, e.g. Ll, Mn, Po
    name: str
    script: str
    role: str  # a key of ROLES

    def line(self) -> str:
        shown = self.character if self.category[0] in "LNPS" else (
            "◌" + self.character if self.category[0] == "M" else " ")
        return (f"U+{ord(self.character):04X} {shown}  {self.category}  {self.script:9} {self.count:>7}  "
                f"{self.name}: {ROLES[self.role]}")


@dataclass
class ProfileDraft:
    """The drafted profile's fields, and the evidence a reviewer needs for each."""

    fields: dict
    inventory: list[CharacterUse]
    lines: int
    digit_lines: list[str] = field(default_factory=list)  # the lines holding a digit
    inside_words: dict[str, list[str]] = field(default_factory=dict)  # ignored char -> words it is inside
    compatibility: dict[str, str] = field(default_factory=dict)  # char -> its NFKC form
    kept_compatibility: list[str] = field(default_factory=list)  # compatibility letters NFKC would break
    rare_letters: list[str] = field(default_factory=list)  # alphabet letters seen at most RARE times
    unstable_letters: list[str] = field(default_factory=list)  # letters the normaliser changes alone
    spaced_share: float = 1.0
    espeak_checked: bool = True

    def summary(self) -> list[str]:
        """What the command prints: the proposal in a few lines, and what needs a decision."""
        f = self.fields
        lines = [f"{f['code']}: {self.lines} lines; script {f['script']}, {len(f['alphabet'])} letters "
                 f"{f['alphabet']}, {len(f['chars_to_ignore'])} characters ignored, casing {f['casing']}, "
                 f"{f['unicode_form']}, word split {f['word_split']}, espeak-ng voice {f['espeak_voice'] or 'none'}"]
        if self.digit_lines:
            lines.append(f"decide: {len(self.digit_lines)} lines hold digits (spell them out, or drop the lines)")
        if self.inside_words:
            lines.append(f"decide: {' '.join(self.inside_words)} written inside words (a letter, or punctuation?)")
        foreign = self.of_role("foreign")
        if foreign:
            lines.append(f"decide: {sum(u.count for u in foreign)} characters of other scripts left out of the alphabet")
        return lines

    def profile(self) -> Profile:
        return profile_from_dict(dict(self.fields), source=f"the draft of {self.fields['code']}")

    def of_role(self, role: str) -> list[CharacterUse]:
        return [use for use in self.inventory if use.role == role]


def script_of(character: str) -> str:
    """The script of a character, read from its Unicode name ("Unknown" for unnamed ones)."""
    name = unicodedata.name(character, "")
    if not name:
        return "Unknown"
    words = name.split()
    for length in (3, 2, 1):
        prefix = " ".join(words[:length])
        if prefix in SCRIPT_PREFIXES:
            return SCRIPT_PREFIXES[prefix]
    category = unicodedata.category(character)
    if category[0] in "PSZC" or (category[0] == "N" and words[0] in ("DIGIT", "VULGAR", "SUPERSCRIPT")):
        return "Common"
    return words[0].capitalize()


def iso639_3_of(code: str) -> str | None:
    """The ISO 639-3 code of a locale's language subtag (`mt` -> `mlt`), from pycountry's
    table of ISO 639-3; None where the table has none."""
    import pycountry

    primary = code.split("-")[0].split("_")[0].lower()
    if len(primary) == 2:
        language = pycountry.languages.get(alpha_2=primary)
    elif len(primary) == 3:
        language = pycountry.languages.get(alpha_3=primary)
    else:
        language = None
    return getattr(language, "alpha_3", None)


def draft_profile(code: str, lines: Iterable[str], name: str | None = None) -> ProfileDraft:
    """A draft profile of `code` from its sentences (one a line)."""
    sentences = [unicodedata.normalize("NFC", line.strip()) for line in lines]
    sentences = [line for line in sentences if line]
    if not sentences:
        raise CtcforgeError(f"no text to draft the {code} profile from: the files hold no non-empty line")
    counts = Counter("".join(sentences))
    script = main_script(counts)
    compatibility = {c: unicodedata.normalize("NFKC", c) for c in counts
                     if unicodedata.normalize("NFKC", c) != c and not c.isspace()}
    kept_compatibility = sorted(c for c in compatibility if is_own_compatibility_letter(c, script))
    form = "NFKC" if set(compatibility) - set(kept_compatibility) and not kept_compatibility else "NFC"
    if form == "NFKC":
        sentences = [unicodedata.normalize("NFKC", line) for line in sentences]
        counts = Counter("".join(sentences))

    inside = words_holding(sentences, counts)
    roles = {c: role_of(c, script, inside.get(c)) for c in counts}
    ignored = sorted(c for c, role in roles.items() if role == "ignored")
    letters = [c for c, role in roles.items() if role == "letter"]
    casing = casing_of(letters)
    normalize = Normalizer({"chars_to_ignore": ignored, "casing": casing, "unicode_form": form})
    normalised = [normalize(line) for line in sentences]
    # The alphabet is what the normaliser writes, so vocab.json holds letters it produces.
    written = set().union(*map(set, normalised))
    candidates = [c for c in written if (roles.get(c) or role_of(c, script, inside.get(c))) == "letter"]
    alphabet = sorted(c for c in candidates if normalize(c) == c)
    # A letter that normalising changes on its own could never be a label: named, not hidden.
    unstable = sorted(c for c in candidates if normalize(c) != c)
    spaced = sum(" " in line for line in normalised) / len(normalised)
    letter_counts = Counter("".join(normalised))
    word_split = "space" if spaced >= SPACED_LINES else "char"
    voice = voice_for_locale(code)
    fields = {
        "code": code,
        "name": name or (voice[1].split(" (")[0] if voice else code),
        "script": script,
        "alphabet": "".join(alphabet),
        "chars_to_ignore": ignored,
        "casing": casing,
        "transliteration": "none",
        "word_split": word_split,
        "unicode_form": form,
        "espeak_voice": voice[0] if voice else None,
        "metrics": ["wer", "cer"] if word_split == "space" else ["cer"],
        "iso639_3": iso639_3_of(code),
    }
    inventory = [CharacterUse(c, n, unicodedata.category(c), unicodedata.name(c, "(unnamed)"), script_of(c), roles[c])
                 for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    draft = ProfileDraft(
        fields=fields, inventory=inventory, lines=len(sentences),
        digit_lines=[line for line in sentences if any(roles[c] == "digit" for c in line)],
        inside_words={c: inside[c] for c in ignored if c in inside},
        compatibility=compatibility, kept_compatibility=kept_compatibility, spaced_share=spaced,
        unstable_letters=unstable,
        rare_letters=[c for c in alphabet if letter_counts[c] <= RARE] if len(sentences) >= RARE_CHECK_LINES else [],
        espeak_checked=bool(installed_voices()))
    draft.profile()  # the same check a shipped profile passes
    return draft


def main_script(counts: Counter) -> str:
    """The script most of the text's letters are in."""
    scripts = Counter()
    for character, count in counts.items():
        if unicodedata.category(character)[0] == "L" and script_of(character) not in ("Common", "Inherited"):
            scripts[script_of(character)] += count
    if not scripts:
        raise CtcforgeError("the text holds no letters of any script; is it the language's sentences?")
    return scripts.most_common(1)[0][0]


def is_own_compatibility_letter(character: str, script: str) -> bool:
    """A letter of the language's script that Unicode merely relates to others (Thai sara am ำ,
    Lao ໜ), which NFKC would split into two labels; not a presentation form, ligature or
    full-width copy, which NFKC rightly folds."""
    name = unicodedata.name(character, "")
    return (unicodedata.category(character)[0] in "LM" and script_of(character) == script
            and unicodedata.decomposition(character).startswith("<compat>")
            and "LIGATURE" not in name and " FORM" not in name)


def words_holding(sentences: list[str], counts: Counter) -> dict[str, list[str]]:
    """Character -> up to EXAMPLES distinct words it is written inside (between two letters),
    for each character of the text that is not a plain letter. Modifier letters (Lm) count
    too: alphabetic to Python, their role is the question."""
    candidates = sorted(c for c in counts if not c.isspace() and unicodedata.category(c) not in PLAIN_LETTERS)
    if not candidates:
        return {}
    # A letter: a word character that is no digit or underscore.
    between = re.compile(f"(?<=[^\\W\\d_])([{''.join(re.escape(c) for c in candidates)}])(?=[^\\W\\d_])")
    inside: dict[str, list[str]] = {}
    for line in sentences:
        for match in between.finditer(line):
            seen = inside.setdefault(match.group(1), [])
            if len(seen) < EXAMPLES:
                end = line.find(" ", match.end())
                word = line[line.rfind(" ", 0, match.start()) + 1:end if end >= 0 else len(line)]
                shown = word.strip(_word_ends(word))
                if shown not in seen:
                    seen.append(shown)
    return inside


def _word_ends(word: str) -> str:
    """The characters around a word that are no part of it (its punctuation)."""
    return "".join(c for c in word if unicodedata.category(c)[0] in "PS")


def role_of(character: str, script: str, inside: list[str] | None) -> str:
    """What the draft does with one character (see ROLES)."""
    if character.isspace():
        return "space"
    category = unicodedata.category(character)
    own = script_of(character)
    if category[0] == "N":
        return "digit"
    if category[0] == "L":
        # A modifier letter written inside words is a letter there (Uzbek oʻ, Ukrainian ʼ).
        if own == script or (own == "Common" and category == "Lm" and inside):
            return "letter"
        return "foreign"
    if category[0] == "M":
        return "letter" if own in (script, "Inherited") else "foreign"
    return "ignored"  # punctuation, symbols, format and control characters


def casing_of(letters: list[str]) -> str:
    """`lower` for a script with case, `lower-turkic` where dotless ı or dotted İ is written,
    `keep` for a script without case."""
    if not any(c.lower() != c or c.upper() != c for c in letters):
        return "keep"
    return "lower-turkic" if {"ı", "İ"} & set(letters) else "lower"


# ---------------------------------------------------------------------------- reading the text


def release_sentence_files(folder: Path, code: str) -> list[Path]:
    """The sentence files of a Common Voice locale folder (or of a release folder holding it):
    validated_sentences.tsv, else validated.tsv, else the split TSVs."""
    folder = Path(folder).expanduser()
    if (folder / code).is_dir():
        folder = folder / code
    if not folder.is_dir():
        raise CtcforgeError(f"--from-release {folder}: no such folder")
    for name in RELEASE_SENTENCE_FILES:
        if (folder / name).is_file():
            return [folder / name]
    splits = [folder / name for name in RELEASE_SPLIT_FILES if (folder / name).is_file()]
    if not splits:
        raise CtcforgeError(f"--from-release {folder}: holds none of {', '.join(RELEASE_SENTENCE_FILES)} or "
                            f"{', '.join(RELEASE_SPLIT_FILES)}; pass a Common Voice locale folder")
    return splits


def draft_from_files(code: str, paths: list[Path], name: str | None = None, option: str = "--from-text",
                     progress: bool = False) -> ProfileDraft:
    """A draft from text files (one sentence a line, or a TSV with a `sentence` column)."""
    from tqdm.auto import tqdm

    lines = tqdm(text_file_lines(paths, option=option), desc=f"reading {code} text", unit=" lines",
                 disable=not progress)
    return draft_profile(code, lines, name=name)


# ---------------------------------------------------------------------------- the YAML file


def yaml_string(text: str) -> str:
    """A double-quoted YAML scalar; invisible characters written as \\uXXXX."""
    out = []
    for character in text:
        if character in '"\\':
            out.append("\\" + character)
        elif unicodedata.category(character)[0] in "CZ" and character != " ":
            out.append(f"\\u{ord(character):04x}" if ord(character) <= 0xFFFF else f"\\U{ord(character):08x}")
        else:
            out.append(character)
    return '"' + "".join(out) + '"'


def comment(lines: Iterable[str], width: int = 100) -> str:
    """YAML comment lines, long ones wrapped (width 0: never)."""
    wrapped = []
    for line in lines:
        wrapped += textwrap.wrap(line, width - 2, subsequent_indent="  ", break_on_hyphens=False) \
            if width and len(line) > width - 2 else [line]
    return "".join(f"# {line}".rstrip() + "\n" for line in wrapped)


def draft_yaml(draft: ProfileDraft, sources: list[str]) -> str:
    """The draft as a commented profile file, for a person who knows the language to review."""
    f = draft.fields
    letters = draft.of_role("letter")
    parts = [comment([f"DRAFT profile of {f['code']}, made by `ctcforge profile` from {draft.lines} lines of "
                      f"{', '.join(sources)}.",
                      "Every value below is a proposal from the text alone: read each comment, correct what is",
                      "wrong, and delete this note when you stand by the file. The character inventory, with",
                      "counts, is at the end."])]
    parts.append(f"code: {f['code']}\n")
    parts.append(comment(["The language's English name" + (" (espeak-ng's name for it)." if f["espeak_voice"] else
                                                           ": replace the locale code with it.")]))
    parts.append(f"name: {yaml_string(f['name'])}\n")
    parts.append(comment(["The script of most letters in the text, read from their Unicode names."]))
    parts.append(f"script: {f['script']}\n")
    parts.append(comment(_alphabet_notes(draft, letters)))
    parts.append(f"alphabet: {yaml_string(f['alphabet'])}\n")
    parts.append(comment(_ignore_notes(draft)))
    parts.append("chars_to_ignore: [" + ", ".join(yaml_string(c) for c in f["chars_to_ignore"]) + "]\n")
    parts.append(comment([{"lower": "The script has upper and lower case: the model writes lower case.",
                           "lower-turkic": "Dotless ı or dotted İ is written: I lower-cases to ı and İ to i, as in tr.",
                           "keep": "The script has no letter case."}[f["casing"]]]))
    parts.append(f"casing: {f['casing']}\n")
    parts.append("transliteration: none\n")
    parts.append(comment([f"{draft.spaced_share:.0%} of the lines hold a space: "
                          + ("words are split at spaces." if f["word_split"] == "space" else
                             "the language writes no spaces between words, so WER counts characters "
                             "(WER equals CER), and CER is the headline metric.")]))
    parts.append(f"word_split: {f['word_split']}\n")
    parts.append(comment(_form_notes(draft)))
    parts.append(f"unicode_form: {f['unicode_form']}\n")
    if f["espeak_voice"]:
        voice_note = [f"espeak-ng's voice for {f['code']}, which `ctcforge synth` speaks with."]
    elif draft.espeak_checked:
        voice_note = ["espeak-ng lists no voice for this language (`espeak-ng --voices`)."]
    else:
        voice_note = ["espeak-ng is not installed here: the voice was not looked for (`espeak-ng --voices`)."]
    parts.append(comment(voice_note))
    parts.append(f"espeak_voice: {f['espeak_voice'] or 'null'}\n")
    parts.append(f"metrics: [{', '.join(f['metrics'])}]\n")
    primary = f["code"].split("-")[0]
    parts.append(comment([f"The ISO 639-3 code of {primary!r}, from pycountry's table; MMS names its language "
                          "adapters by it (adapter.<code>.safetensors)." if f["iso639_3"] else
                          f"pycountry's ISO 639-3 table has no {primary!r}: give the language's code here, or an "
                          "MMS base refuses the repo (its language adapters are named by it)."]))
    parts.append(f"iso639_3: {f['iso639_3'] or 'null'}\n")
    parts.append("\n" + comment(["Character inventory of the text (after the Unicode form above), most frequent first:",
                                 "code point, character, category, script, count, name: what the draft did."]
                                + ["  " + use.line() for use in draft.inventory], width=0))
    return "".join(parts)


def _alphabet_notes(draft: ProfileDraft, letters: list[CharacterUse]) -> list[str]:
    marks = [use.character for use in letters if use.category[0] == "M"]
    notes = [f"The {len(draft.fields['alphabet'])} letters and marks of the {draft.fields['script']} script in "
             f"the text, as the normaliser writes them" + (" (in lower case)." if draft.fields["casing"] != "keep" else ".")]
    if marks:
        notes.append(f"Combining marks among them: {' '.join('U+%04X' % ord(m) for m in marks)}.")
    if draft.unstable_letters:
        notes.append("Left out because normalising them alone changes them (no label could hold them): "
                     + " ".join(f"U+{ord(c):04X}" for c in draft.unstable_letters) + ".")
    if draft.rare_letters:
        notes.append(f"Seen at most {RARE} times (a typo, or a letter of loans?): {' '.join(draft.rare_letters)}.")
    foreign = draft.of_role("foreign")
    if foreign:
        notes.append(f"Left out, from other scripts ({sum(u.count for u in foreign)} characters, e.g. foreign "
                     f"names): {' '.join(u.character for u in foreign[:20])}. They stay in the text and become "
                     "[UNK] labels: add the ones the language writes, or map them with `replacements`.")
    return notes


def _ignore_notes(draft: ProfileDraft) -> list[str]:
    notes = ["Punctuation, symbols and invisible format characters: removed, since they are not spoken."]
    for character, words in draft.inside_words.items():
        shown = yaml_string(character)
        notes.append(f"{shown} is written inside words ({', '.join(words)}): removing it joins the parts. If it "
                     "is a letter here, move it to the alphabet (and map its other spellings onto it with "
                     "`replacements`); if it separates words, take it out of this list and map it to \" \" there.")
    joiners = [c for c in JOINERS if c in draft.fields["chars_to_ignore"]]
    if joiners:
        notes.append(f"{', '.join(yaml_string(c) for c in joiners)} (zero-width non-joiner / joiner) only change how "
                     f"letters join: removed.")
    symbols = [c for c in draft.fields["chars_to_ignore"] if unicodedata.category(c)[0] == "S"]
    if symbols:
        notes.append(f"Symbols that may be read aloud ({' '.join(symbols)}): spell them out in the text, or keep them ignored.")
    if draft.digit_lines:
        digits = "".join(sorted({u.character for u in draft.of_role("digit")}))
        notes.append(f"DIGITS: {len(draft.digit_lines)} of the lines hold digits ({digits}), e.g. "
                     f"{draft.digit_lines[0]!r}. They are neither letters nor ignored (a digit has no one "
                     "reading): you decide, spell the numbers out in the text, or drop those lines from training.")
    return notes


def _form_notes(draft: ProfileDraft) -> list[str]:
    folded = sorted(set(draft.compatibility) - set(draft.kept_compatibility))
    if not draft.compatibility:
        return ["No compatibility forms in the text: NFC (composed characters)."]
    notes = []
    if draft.fields["unicode_form"] == "NFKC":
        notes.append("NFKC: the text holds compatibility forms, which it folds into ordinary characters: "
                     + ", ".join(f"{c} -> {draft.compatibility[c]}" for c in folded[:10]) + ".")
    else:
        notes.append("NFC: NFKC would split letters of the script into two: "
                     + ", ".join(f"{c} -> {draft.compatibility[c]}" for c in draft.kept_compatibility) + ".")
        if folded:
            notes.append("The text also holds compatibility forms NFKC would fold ("
                         + ", ".join(f"{c} -> {draft.compatibility[c]}" for c in folded[:10])
                         + "): weigh the two.")
    return notes


def write_draft(code: str, sources: list[Path], output: Path, *, from_release: bool = False,
                name: str | None = None, force: bool = False, progress: bool = False) -> ProfileDraft:
    """`ctcforge profile`: drafts the profile and writes it to `output` (atomically)."""
    output = Path(output).expanduser()
    if output.exists() and not force:
        raise CtcforgeError(f"{output} exists; pass --force to replace it, or --output another file")
    if output.suffix == ".yaml" and output.stem != code:
        raise CtcforgeError(f"--output {output}: a profile file is named after its locale: {code}.yaml")
    paths = release_sentence_files(sources[0], code) if from_release else list(sources)
    draft = draft_from_files(code, paths, name=name, option="--from-release" if from_release else "--from-text",
                             progress=progress)
    write_text_atomically(output, draft_yaml(draft, [p.name for p in paths]))
    return draft
