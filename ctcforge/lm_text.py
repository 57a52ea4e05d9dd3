"""The n-gram LM's text: gathered, passed through the repo's own normaliser, deduplicated,
kept clear of the test split, and checked against the profile's alphabet.

The LM must see text written exactly as the acoustic model writes it, so every line goes
through the normaliser that training used (the repo's `language_profile.json`). Its
"words" are then the spans between spaces of that text, which are what pyctcdecode scores
at each word delimiter, whatever the language's WER counts as a word.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ctcforge.answers import ANSWERS_FILE, Answers
from ctcforge.languages import alphabet_characters, profile_from_dict
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import PROFILE_FILE
from ctcforge.runtime.text_normalizer import Normalizer, load

SYNTH_MARKER = "ctcforge-synth.json"  # written by `ctcforge synth` into its release
FOREIGN_EXAMPLES = 3
MOSTLY_FOREIGN = 0.5  # share of non-space characters outside the alphabet worth a warning
FEW_WORDS_PER_SENTENCE = 1.5  # fewer on average: the text has (almost) no spaces


@dataclass
class CorpusReport:
    """What happened to the text on its way into the LM."""

    lines_read: int = 0
    empty: int = 0  # lines with no word left after normalisation
    duplicates: int = 0
    test_sentences_excluded: int = 0
    sentences: int = 0
    words: int = 0
    alphabet_characters: int = 0
    foreign_characters: Counter = field(default_factory=Counter)
    foreign_sentences: int = 0
    foreign_examples: list[str] = field(default_factory=list)

    @property
    def foreign_share(self) -> float:
        foreign = sum(self.foreign_characters.values())
        return foreign / max(1, foreign + self.alphabet_characters)

    def summary(self) -> str:
        return (f"LM text: {self.lines_read} lines read, {self.empty} empty after normalisation, "
                f"{self.duplicates} duplicates, {self.test_sentences_excluded} test-split sentences left out; "
                f"{self.sentences} sentences, {self.words} words kept")


def repo_normalizer(repo: Path) -> Normalizer:
    """The normaliser training used: the repo's own profile file."""
    path = repo / PROFILE_FILE
    if not path.is_file():
        raise CtcforgeError(f"{repo} has no {PROFILE_FILE}; is it a repo made by `ctcforge new`?")
    return load(path)


def repo_alphabet(repo: Path) -> frozenset[str]:
    """The letters the repo's profile allows, ranges included."""
    path = repo / PROFILE_FILE
    profile = profile_from_dict(json.loads(path.read_text(encoding="utf-8")), source=str(path))
    return frozenset(alphabet_characters(profile))


SENTENCE_COLUMN = "sentence"


def text_file_lines(paths: Iterable[Path], option: str = "--text") -> Iterator[str]:
    """Every sentence of the files (read lazily: corpora can be large): one a line, or the
    `sentence` column of a TSV with that header, as Common Voice's validated_sentences.tsv.
    Errors name the command-line `option` the files came from."""
    for path in paths:
        try:
            # utf-8-sig: a byte order mark, as Windows editors write, would otherwise become
            # part of the first word of the corpus.
            with open(path, encoding="utf-8-sig") as file:
                yield from sentence_column(file) if str(path).endswith(".tsv") else file
        except FileNotFoundError as exc:
            raise CtcforgeError(f"{option} {path}: no such file") from exc
        except UnicodeDecodeError as exc:
            raise CtcforgeError(f"{option} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def sentence_column(file) -> Iterator[str]:
    """The `sentence` field of each row of a TSV whose header names it; a TSV without one
    is read as plain lines."""
    header = file.readline()
    columns = header.rstrip("\r\n").split("\t")
    if SENTENCE_COLUMN not in columns:
        yield header
        yield from file
        return
    index = columns.index(SENTENCE_COLUMN)
    for line in file:
        fields = line.rstrip("\r\n").split("\t")
        # A row cut short yields an empty line, which the corpus report counts as empty.
        yield fields[index] if len(fields) > index else ""


def dataset_lines(dataset: str, config: str | None, split: str, text_column: str) -> list[str]:
    """The text column of a speech dataset, read with the repo's one dataset loader."""
    from ctcforge.runtime.speech_data import load_speech_dataset

    rows = load_speech_dataset(dataset, config, split, text_column=text_column)
    # Reading one column decodes no audio.
    return [text or "" for text in rows[text_column]]


def test_split_sentences(repo: Path, normalize: Normalizer) -> tuple[set[str], str]:
    """The normalised sentences the repo may be tested on, and where they came from.

    They are the test split of the dataset the repo was stamped from (its answers file).
    A release made by `ctcforge synth` adds every sentence of the sentence file whose fixed
    split is "test", spoken or not, since a bigger release would speak them.
    """
    if not (repo / ANSWERS_FILE).is_file():
        return set(), f"{repo} has no {ANSWERS_FILE}, so no test split is known"
    answers = Answers.load(repo)
    if not answers.dataset:
        return set(), f"{ANSWERS_FILE} records no dataset, so no test split is known"
    try:
        sentences = dataset_lines(answers.dataset, answers.dataset_config, "test", "sentence")
    except CtcforgeError as exc:
        raise CtcforgeError(f"the leakage guard cannot read the repo's test split: {exc} "
                            "(--allow-test-sentences builds without the guard)") from exc
    source = f"the test split of {answers.dataset}"
    synth_locale = synthetic_release_locale(answers.dataset, answers.dataset_config)
    if synth_locale:
        from ctcforge.synth import sentences_for

        sentences += sentences_for(synth_locale, "test")
        source += f" and every test sentence of ctcforge/sentences/{synth_locale}.txt"
    return {normalize(s) for s in sentences} - {""}, source


def synthetic_release(dataset: str, config: str | None) -> dict | None:
    """What `ctcforge synth` recorded of the release in `dataset` (locale, seed, num_clips),
    or None for any other dataset."""
    root = Path(dataset).expanduser()
    for folder in ([root / config] if config else []) + [root]:
        marker = folder / SYNTH_MARKER
        if marker.is_file():
            return json.loads(marker.read_text(encoding="utf-8"))
    return None


def synthetic_release_locale(dataset: str, config: str | None) -> str | None:
    """The locale of a `ctcforge synth` release folder, or None for any other dataset."""
    made = synthetic_release(dataset, config)
    return made.get("locale") if made else None


def write_corpus(lines: Iterable[str], normalize: Normalizer, excluded: set[str], alphabet: frozenset[str],
                 output: Path, progress=None) -> CorpusReport:
    """Writes the normalised, distinct sentences not in `excluded` to `output`, one a line,
    and reports what was dropped and which characters fall outside `alphabet`."""
    report = CorpusReport()
    seen: set[str] = set()
    allowed = alphabet | {" "}
    with open(output, "w", encoding="utf-8") as corpus:
        for line in lines:
            report.lines_read += 1
            if progress is not None:
                progress.update(1)
            sentence = normalize(line)
            if not sentence:
                report.empty += 1
            elif sentence in seen:
                report.duplicates += 1
            elif sentence in excluded:
                report.test_sentences_excluded += 1
                seen.add(sentence)  # its repeats count as duplicates, not as more leaks
            else:
                seen.add(sentence)
                corpus.write(sentence + "\n")
                count_sentence(report, sentence, set(sentence) - allowed)
    return report


def count_sentence(report: CorpusReport, sentence: str, foreign_set: set[str]) -> None:
    spaces = sentence.count(" ")  # normalised text has single spaces, none at the ends
    report.sentences += 1
    report.words += spaces + 1
    # A set of the sentence's characters is far cheaper than a pass per character, and
    # most sentences hold no foreign one.
    foreign = [c for c in sentence if c in foreign_set] if foreign_set else []
    report.alphabet_characters += len(sentence) - spaces - len(foreign)
    if foreign:
        report.foreign_characters.update(foreign)
        report.foreign_sentences += 1
        if len(report.foreign_examples) < FOREIGN_EXAMPLES:
            report.foreign_examples.append(sentence)


def check_corpus(report: CorpusReport, language: str) -> list[str]:
    """Refuses text that would make an empty or useless LM; returns the warnings to print."""
    if report.sentences == 0:
        reasons = [f"{report.lines_read} lines read", f"{report.empty} empty after the repo normaliser"]
        if report.duplicates:
            reasons.append(f"{report.duplicates} duplicates")
        if report.test_sentences_excluded:
            reasons.append(f"{report.test_sentences_excluded} test-split sentences left out "
                           "(--allow-test-sentences keeps them)")
        raise CtcforgeError(f"no LM text is left ({', '.join(reasons)}); give text in {language}")
    if report.alphabet_characters == 0:
        raise CtcforgeError(f"none of the LM text is in the {language} alphabet "
                            f"(characters found: {top_characters(report.foreign_characters)}); "
                            "is it text in another script?")
    warnings = []
    if report.words < FEW_WORDS_PER_SENTENCE * report.sentences:
        warnings.append(f"the LM sentences average {report.words / report.sentences:.1f} words: pyctcdecode scores "
                        "LM words between spaces, so text without spaces between words (Chinese, Japanese) "
                        "needs splitting into words first")
    if not report.foreign_characters:
        return warnings
    warning = (f"{report.foreign_sentences} of {report.sentences} LM sentences hold characters outside the "
               f"{language} alphabet ({report.foreign_share:.0%} of all characters): "
               f"{top_characters(report.foreign_characters)}; e.g. {report.foreign_examples[0]!r}")
    if report.foreign_share > MOSTLY_FOREIGN:
        warning += "; most of the text is in another script, so the LM will barely help"
    return warnings + [warning]


def top_characters(counts: Counter, most: int = 10) -> str:
    return ", ".join(f"{c!r} x{n}" for c, n in counts.most_common(most))
