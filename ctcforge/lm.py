"""`ctcforge lm`: build a repo's n-gram LM in the layout pyctcdecode and transformers load.

The stages, each with its own progress bar:

1. text: files and/or a dataset's text column through the repo's normaliser, deduplicated,
   the repo's test sentences left out (`ctcforge.lm_text`);
2. lmplz: a KenLM ARPA of the given order, with a memory cap (`ctcforge.kenlm_tools`);
   the `</s>` unigram is added only when the ARPA lacks it;
3. build_binary: the ARPA becomes `language_model/lm.binary`, and the ARPA is deleted;
4. unigrams: the ARPA's words become `language_model/unigrams.txt`.

`attrs.json` gets pyctcdecode's default weights (`ctcforge.lm_tuning` tunes them) and
`alphabet.json` the model's labels (`ctcforge.lm_folder`). Everything is built in a
staging folder under `.ctcforge-cache/` and moved into place at the end, so a failure at
any stage leaves the previous LM as it was.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from ctcforge.kenlm_tools import (arpa_unigram_count, arpa_words, check_lmplz_options, ensure_end_of_sentence_unigram,
                                  find_tool, run_build_binary, run_lmplz)
from ctcforge.lm_folder import (KENLM_FILE, check_language_model_dir, declare_lm_processor, decoder_labels,
                                write_alphabet, write_attrs)
from ctcforge.lm_text import (CorpusReport, check_corpus, dataset_lines, repo_alphabet, repo_normalizer,
                              test_split_sentences, text_file_lines, write_corpus)
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import ALPHABET_FILE, LANGUAGE_MODEL_DIR, UNIGRAMS_FILE

DEFAULT_ORDER = 5
# lmplz reserves 80% of the machine's memory by default whatever the corpus size, which
# starves everything else on a shared machine. 10% (2.3 GiB of 23) sorts the
# tens-of-millions-of-words corpora of a Common Voice language in memory; lmplz spills
# to -T's disk when a corpus needs more, so a cap costs speed, never the build.
DEFAULT_MEMORY = "10%"
CACHE_DIR = ".ctcforge-cache"  # git-ignored by the repo template
TUNING_DIR = "lm_tuning"


@dataclass
class TextSources:
    """Where the LM text comes from: text files, a dataset's text column, or both."""

    files: list[Path] = field(default_factory=list)
    dataset: str | None = None
    config: str | None = None
    split: str = "train"
    text_column: str = "sentence"


def build_language_model(repo: Path, sources: TextSources, *, order: int = DEFAULT_ORDER,
                         prune: tuple[int, ...] = (), memory: str = DEFAULT_MEMORY,
                         allow_test_sentences: bool = False, progress: bool = True, log=print) -> CorpusReport:
    """Builds `alphabet.json` and `language_model/` into `repo`; returns the text report."""
    repo = Path(repo)
    normalize = repo_normalizer(repo)
    # Everything that can fail fast is checked before the long stages start.
    labels = decoder_labels(repo, normalize)
    check_lmplz_options(order, prune, memory)
    for tool in ("lmplz", "build_binary"):
        find_tool(tool)
    if not (sources.files or sources.dataset):
        raise CtcforgeError("no LM text: give --text FILE and/or --dataset")
    for path in sources.files:
        if not Path(path).is_file():
            raise CtcforgeError(f"--text {path}: no such file")

    (repo / CACHE_DIR).mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="lm-build-", dir=repo / CACHE_DIR))
    try:
        corpus = staging / "corpus.txt"
        report = gather_text(repo, sources, normalize, corpus, allow_test_sentences, progress, log)
        lm_dir = staging / LANGUAGE_MODEL_DIR
        lm_dir.mkdir()
        build_kenlm_files(corpus, lm_dir, report, order=order, prune=prune, memory=memory,
                          progress=progress, log=log)
        write_attrs(lm_dir, *default_weights())
        write_alphabet(labels, staging)
        check_language_model_dir(staging)
        move_into_place(staging, repo)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for note in declare_lm_processor(repo) + remove_stale_tuning(repo):
        log(note)
    log(f"wrote {repo / ALPHABET_FILE} and {repo / LANGUAGE_MODEL_DIR}/ (order {order}, {report.sentences} sentences)")
    return report


def default_weights() -> tuple[float, float]:
    from ctcforge.runtime.beam_search import DEFAULT_ALPHA, DEFAULT_BETA

    return DEFAULT_ALPHA, DEFAULT_BETA


def gather_text(repo: Path, sources: TextSources, normalize, corpus: Path, allow_test_sentences: bool,
                progress: bool, log) -> CorpusReport:
    """Stage 1: the normalised, distinct sentences in `corpus`, checked and reported."""
    from tqdm.auto import tqdm

    language = normalize.profile.get("code", "the profile's")
    excluded: set[str] = set()
    if allow_test_sentences:
        log("leakage guard off (--allow-test-sentences): test-split sentences may enter the LM")
    else:
        excluded, source = test_split_sentences(repo, normalize)
        log(f"leakage guard: {len(excluded)} test sentences from {source}" if excluded
            else f"leakage guard off: {source}")
    lines = text_file_lines(sources.files)
    if sources.dataset:
        lines = chain(lines, dataset_lines(sources.dataset, sources.config or language, sources.split,
                                           sources.text_column))
    with tqdm(desc="text", unit=" lines", disable=not progress, leave=False) as bar:
        report = write_corpus(lines, normalize, excluded, repo_alphabet(repo), corpus, bar)
    log(report.summary())
    for warning in check_corpus(report, language):
        log(f"warning: {warning}")
    return report


def build_kenlm_files(corpus: Path, lm_dir: Path, report: CorpusReport, *, order: int, prune, memory: str,
                      progress: bool, log) -> None:
    """Stages 2-4: lmplz, the `</s>` check, build_binary and unigrams.txt; the ARPA is
    deleted after, as pyctcdecode wants exactly one KenLM file."""
    arpa = corpus.with_name("lm.arpa")
    run_lmplz(corpus, arpa, order=order, prune=prune, memory=memory, temp_dir=corpus.parent, progress=progress)
    corpus.unlink()
    if ensure_end_of_sentence_unigram(arpa, end_of_sentence_log10_prob(report)):
        log("lmplz wrote no </s> unigram; added it")
    run_build_binary(arpa, lm_dir / KENLM_FILE, progress=progress)
    write_unigrams(arpa, lm_dir / UNIGRAMS_FILE, progress)
    arpa.unlink()


def end_of_sentence_log10_prob(report: CorpusReport) -> float:
    """The unigram probability of `</s>` in the text: one per sentence among all tokens."""
    return math.log10(report.sentences / (report.words + report.sentences))


def write_unigrams(arpa: Path, path: Path, progress: bool) -> int:
    """The ARPA's words, one a line: the words pyctcdecode completes partial words towards."""
    from tqdm.auto import tqdm

    count = 0
    with open(path, "w", encoding="utf-8") as file, \
            tqdm(total=arpa_unigram_count(arpa), desc="unigrams", disable=not progress, leave=False) as bar:
        for word in arpa_words(arpa):
            file.write(word + "\n")
            count += 1
            bar.update(1)
    return count


def move_into_place(staging: Path, repo: Path) -> None:
    """Swaps the staged language_model/ and alphabet.json into the repo; if the swap
    fails half way, the previous language_model/ is put back."""
    target = repo / LANGUAGE_MODEL_DIR
    previous = staging / "previous"
    if target.exists():
        os.rename(target, previous)
    try:
        os.rename(staging / LANGUAGE_MODEL_DIR, target)
    except OSError:
        if previous.exists():
            os.rename(previous, target)
        raise
    os.replace(staging / ALPHABET_FILE, repo / ALPHABET_FILE)


def remove_stale_tuning(repo: Path) -> list[str]:
    """Tuning results describe the LM they were tuned on, not a new one."""
    folder = repo / TUNING_DIR
    if not folder.exists():
        return []
    shutil.rmtree(folder)
    return [f"removed {TUNING_DIR}/: it was tuned for the previous LM (--tune-dataset tunes this one)"]
