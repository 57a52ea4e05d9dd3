"""The n-gram LM side of decoding: finding and loading a repo's language model and running
the beam search over it, as eval.py and `ctcforge lm` tuning both do.

The search is the one transformers' ASR pipeline runs: the text of the best beam of
pyctcdecode's `decode_beams` (its `decode` prunes beam histories instead, which can end on
another beam), at the pipeline's beam width. It runs in C++ (the `ctc-beam-decoder`
package, which reproduces pyctcdecode's search and gives the same text, several times
faster) or, when that package cannot be loaded, in pyctcdecode itself, saying so once.
Both read the same files: `alphabet.json` and `language_model/` as pyctcdecode lays them out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
from dataclasses import dataclass, replace

# The LM folder's files, as the repo contract names them.
from .repo_files import ALPHABET_FILE, ATTRS_FILE, KENLM_EXTENSIONS, LANGUAGE_MODEL_DIR, UNIGRAMS_FILE
from .errors import CtcforgeError
from .vocabulary import check_labels

# pyctcdecode's defaults, which the pipeline decodes with (it passes no beam width) and
# `ctcforge lm` writes into attrs.json; tests/test_lm.py holds them equal to pyctcdecode's.
DEFAULT_ALPHA = 0.5
DEFAULT_BETA = 1.5
DEFAULT_BEAM_WIDTH = 100
DEFAULT_UNK_SCORE_OFFSET = -10.0
DEFAULT_SCORE_BOUNDARY = True
# The decoder packages, by the name eval.py's summary and the benchmarks give them.
CPP_ENGINE = "ctc-beam-decoder"
# attrs.json's keys, as pyctcdecode names them.
WEIGHT_NAMES = ("alpha", "beta", "unk_score_offset", "score_boundary")
PYTHON_ENGINE = "pyctcdecode"
# What fixes an LM that does not fit the model or does not load: building it again.
REBUILD = "rebuild it with `ctcforge lm`"


def visible_files(folder: str) -> list[str]:
    """The names pyctcdecode counts in a folder: not hidden, not starting with "__"."""
    return sorted(name for name in os.listdir(folder) if not name.startswith((".", "__")))


def has_language_model(model_dir: str) -> bool:
    """Whether `model_dir` has a non-empty language_model/. Hidden files (.gitkeep, an
    editor's swap file) do not count, as pyctcdecode ignores them."""
    lm_dir = os.path.join(model_dir, LANGUAGE_MODEL_DIR)
    return os.path.isdir(lm_dir) and bool(visible_files(lm_dir))


def lm_dir_problems(lm_dir: str) -> list[str]:
    """What is missing or extra in the language_model/ folder pyctcdecode loads beside
    alphabet.json: exactly attrs.json, unigrams.txt and one KenLM file."""
    found = visible_files(lm_dir)
    kenlm_files = [name for name in found if os.path.splitext(name)[1] in KENLM_EXTENSIONS]
    missing = [name for name in (ATTRS_FILE, UNIGRAMS_FILE) if name not in found]
    if not kenlm_files:
        missing.append(f"a KenLM file ({', '.join(KENLM_EXTENSIONS)})")
    # One KenLM file belongs; a second one is as extra as any other file.
    kept = {ATTRS_FILE, UNIGRAMS_FILE, *kenlm_files[:1]}
    extra = [name for name in found if name not in kept]
    if not missing and not extra:
        return []
    message = (f"{lm_dir}: expected 3 files ({ATTRS_FILE}, {UNIGRAMS_FILE}, one KenLM file), "
               f"found {len(found)}: {', '.join(found) or 'none'}")
    if missing:
        message += f"; missing: {', '.join(missing)}"
    if extra:
        message += f"; extra: {', '.join(extra)}"
    return [message]


def ctc_labels(tokenizer, vocab_size: int, where: str = "the model") -> list[str]:
    """The model's output labels in id order, as pyctcdecode wants them: the blank
    (padding token) as "" and the word delimiter as " ". Raises CtcforgeError when the
    tokenizer's labels do not name the outputs one to one (`vocabulary.check_labels`)."""
    token_by_id = check_labels(tokenizer, vocab_size, where)
    labels = [token_by_id[index] for index in range(vocab_size)]
    delimiter = getattr(tokenizer, "word_delimiter_token", None)
    return ["" if t == tokenizer.pad_token else " " if t == delimiter else t for t in labels]


def decoder_alphabet(labels: list[str]) -> list[str]:
    """The labels alphabet.json must hold for a model's `ctc_labels`: pyctcdecode's own
    spelling of them ([UNK] becomes "⁇"), which transformers checks the tokenizer against
    when it loads Wav2Vec2ProcessorWithLM."""
    from pyctcdecode.alphabet import Alphabet

    return Alphabet.build_alphabet(labels).labels


# ---------------------------------------------------------------------------- the LM's files


@dataclass(frozen=True)
class LanguageModelFiles:
    """What a decoder is built from: the labels, the KenLM file, the known words (None
    when there is no unigrams.txt) and the weights of attrs.json, pyctcdecode's defaults
    where it has none. `alphabet_dir` is the folder when its alphabet.json gave the labels."""

    labels: tuple[str, ...]
    kenlm_path: str
    unigrams: tuple[str, ...] | None
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    unk_score_offset: float = DEFAULT_UNK_SCORE_OFFSET
    score_boundary: bool = DEFAULT_SCORE_BOUNDARY
    alphabet_dir: str | None = None


def read_language_model(model_dir: str, tokenizer, vocab_size: int) -> LanguageModelFiles:
    """The folder's LM as pyctcdecode reads it. Its own layout (`alphabet.json` beside
    `language_model/`, as `ctcforge lm` and `Wav2Vec2ProcessorWithLM.save_pretrained` write
    it) gives the labels, checked label by label against the tokenizer when one is given;
    otherwise they come from the model's vocabulary (the tokenizer is needed only then). In
    `language_model/`: one KenLM file, and `unigrams.txt` and `attrs.json` when present.
    Raises CtcforgeError, naming the file and the fix, for an LM that does not fit the model."""
    alphabet_path = os.path.join(model_dir, ALPHABET_FILE)
    lm_dir = os.path.join(model_dir, LANGUAGE_MODEL_DIR)
    if os.path.isfile(alphabet_path):
        problems = lm_dir_problems(lm_dir)
        if problems:  # pyctcdecode would say "wrong number of files" without naming them
            raise CtcforgeError(f"{problems[0]}; remove what is extra, or {REBUILD}")
        with open(alphabet_path, encoding="utf-8") as file:
            labels, alphabet_dir = json.load(file)["labels"], model_dir
        if tokenizer is not None:
            check_alphabet(labels, tokenizer, vocab_size)
    else:
        labels, alphabet_dir = ctc_labels(tokenizer, vocab_size), None
    kenlm_files = sorted(f for f in os.listdir(lm_dir) if f.endswith(KENLM_EXTENSIONS))
    if len(kenlm_files) != 1:
        expected = ", ".join(KENLM_EXTENSIONS)
        raise CtcforgeError(f"{lm_dir} should hold one KenLM file ({expected}), not {kenlm_files}")
    unigrams = None
    if os.path.isfile(os.path.join(lm_dir, UNIGRAMS_FILE)):
        with open(os.path.join(lm_dir, UNIGRAMS_FILE), encoding="utf-8") as file:
            unigrams = tuple(line.strip() for line in file if line.strip())
    attrs = {}
    if os.path.isfile(os.path.join(lm_dir, ATTRS_FILE)):
        with open(os.path.join(lm_dir, ATTRS_FILE), encoding="utf-8") as file:
            attrs = json.load(file)
    unknown = sorted(set(attrs) - set(WEIGHT_NAMES))
    if unknown:
        raise CtcforgeError(f"{lm_dir}/attrs.json holds {unknown}, which pyctcdecode refuses; keep only {WEIGHT_NAMES}")
    return LanguageModelFiles(tuple(labels), os.path.join(lm_dir, kenlm_files[0]), unigrams, alphabet_dir=alphabet_dir,
                              **attrs)


def check_alphabet(labels: list[str], tokenizer, vocab_size: int) -> None:
    """The decoder needs one label per model output, in the tokenizer's order: an
    alphabet.json of another vocabulary (labels swapped, or of an older vocab.json) of the
    right length would decode every clip into other letters without a word."""
    if len(labels) != vocab_size:
        raise CtcforgeError(f"the LM decoder's {ALPHABET_FILE} has {len(labels)} labels but the model writes "
                         f"{vocab_size}; {REBUILD}")
    expected = decoder_alphabet(ctc_labels(tokenizer, vocab_size))
    differ = [index for index in range(vocab_size) if labels[index] != expected[index]]
    if differ:
        shown = ", ".join(f"id {i}: {labels[i]!r} for {expected[i]!r}" for i in differ[:5])
        raise CtcforgeError(f"the LM decoder's {ALPHABET_FILE} does not follow vocab.json ({len(differ)} labels "
                         f"differ: {shown}); it was built for another vocabulary: {REBUILD}")


@contextlib.contextmanager
def kenlm_load_errors(kenlm_path: str):
    """KenLM's error for a file it cannot read as a CtcforgeError naming the file and the fix:
    pyctcdecode's kenlm raises OSError ("Cannot read model ... End of file"),
    ctc-beam-decoder a ValueError ("could not load language model ...") of several lines."""
    try:
        yield
    except (OSError, RuntimeError, ValueError) as error:
        if isinstance(error, ValueError) and "language model" not in str(error):
            raise
        relative = os.path.join(LANGUAGE_MODEL_DIR, os.path.basename(kenlm_path))
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CtcforgeError(f"{relative} is damaged or cut short ({reason}): {REBUILD}") from None


# ---------------------------------------------------------------------------- the decoders


class CppDecoder:
    """ctc-beam-decoder's C++ search over the LM. Its weights are fixed when it is built,
    so other weights make another decoder (loading the KenLM file again)."""

    engine = CPP_ENGINE

    def __init__(self, files: LanguageModelFiles):
        from ctc_beam_decoder import build_ctcdecoder

        self.files = files
        self._decoder = build_ctcdecoder(
            list(files.labels), kenlm_model_path=files.kenlm_path,
            unigrams=None if files.unigrams is None else list(files.unigrams), alpha=files.alpha, beta=files.beta,
            unk_score_offset=files.unk_score_offset, lm_score_boundary=files.score_boundary)
        self.columns = self._decoder.n_columns

    def with_weights(self, alpha: float, beta: float) -> "CppDecoder":
        if (alpha, beta) == (self.files.alpha, self.files.beta):
            return self
        return CppDecoder(replace(self.files, alpha=alpha, beta=beta))

    def best_text(self, logits, beam_width: int) -> str:
        beams = self._decoder.decode_beams(logits, beam_width=beam_width)
        return beams[0][0] if beams else ""  # no beam survives only where pyctcdecode would raise


class PyctcdecodeDecoder:
    """pyctcdecode's search over the LM, loaded as transformers' pipeline loads it
    (`load_from_dir`) when the folder has pyctcdecode's layout."""

    engine = PYTHON_ENGINE

    def __init__(self, files: LanguageModelFiles):
        from pyctcdecode import BeamSearchDecoderCTC, build_ctcdecoder

        self.files = files
        # Without its warnings about small vocabularies, which every tiny test LM has.
        pyctcdecode_log = logging.getLogger("pyctcdecode")
        level = pyctcdecode_log.level
        pyctcdecode_log.setLevel(logging.ERROR)
        try:
            if files.alphabet_dir is not None:
                self._decoder = BeamSearchDecoderCTC.load_from_dir(files.alphabet_dir)
            else:
                self._decoder = build_ctcdecoder(
                    list(files.labels), kenlm_model_path=files.kenlm_path,
                    unigrams=None if files.unigrams is None else list(files.unigrams), alpha=files.alpha,
                    beta=files.beta, unk_score_offset=files.unk_score_offset,
                    lm_score_boundary=files.score_boundary)
        finally:
            pyctcdecode_log.setLevel(level)
        self.columns = len(self._decoder._alphabet.labels)  # pyctcdecode 0.5 has no public name for it

    def with_weights(self, alpha: float, beta: float) -> "PyctcdecodeDecoder":
        """This decoder, its weights changed in place (each fork pool worker has its own copy)."""
        self._decoder.reset_params(alpha=alpha, beta=beta)
        self.files = replace(self.files, alpha=alpha, beta=beta)
        return self

    def best_text(self, logits, beam_width: int) -> str:
        return self._decoder.decode_beams(logits, beam_width=beam_width)[0][0]


_said_fallback = False


def load_beam_decoder(model_dir: str, tokenizer, vocab_size: int, engine: str | None = None):
    """The folder's LM in a decoder: ctc-beam-decoder's, or pyctcdecode's when that one
    cannot be loaded here (no wheel for the platform, a glibc older than 2.35), which is
    said once. `engine` (CPP_ENGINE or PYTHON_ENGINE) asks for one of them."""
    global _said_fallback

    files = read_language_model(model_dir, tokenizer, vocab_size)
    engine_class = PyctcdecodeDecoder if engine == PYTHON_ENGINE else CppDecoder
    if engine_class is CppDecoder:
        try:
            import ctc_beam_decoder

            if not ctc_beam_decoder.has_kenlm():
                raise RuntimeError("this build of it has no KenLM")
        except (ImportError, OSError, RuntimeError) as error:
            if engine == CPP_ENGINE:
                raise
            if not _said_fallback:
                print(f"{CPP_ENGINE} cannot be loaded ({error}); decoding with {PYTHON_ENGINE} instead "
                      "(the same text, several times slower)", file=sys.stderr)
                _said_fallback = True
            engine_class = PyctcdecodeDecoder
    with kenlm_load_errors(files.kenlm_path):
        decoder = engine_class(files)
    if vocab_size is not None and decoder.columns != vocab_size:  # it would fail on the first clip
        raise CtcforgeError(f"the LM decoder's alphabet has {decoder.columns} labels but the model writes "
                         f"{vocab_size}; {REBUILD}")
    return decoder


# ---------------------------------------------------------------------------- the search


def decode_weights(decoder, logits_list: list, task: tuple[float, float, tuple[int, ...]]) -> list:
    """(cell, every clip's best-beam text) for each beam width at one alpha and beta."""
    alpha, beta, beam_widths = task
    weighted = decoder.with_weights(float(alpha), float(beta))
    return [((alpha, beta, width), [weighted.best_text(logits, int(width)) for logits in logits_list])
            for width in beam_widths]


# What a worker decodes with. Set before the pool starts and inherited, never pickled:
# pyctcdecode keeps the KenLM model in a class attribute that pickling skips.
_worker_decoder = None
_worker_logits: list = []


def _worker_best_beam(logits) -> str:
    return _worker_decoder.best_text(logits, DEFAULT_BEAM_WIDTH)


def _worker_weights(task) -> list:
    return decode_weights(_worker_decoder, _worker_logits, task)


def _ignore_interrupts() -> None:
    """Ctrl-C in a terminal reaches the whole process group. Workers that died of it would
    leave Pool.terminate() waiting for them for good; the parent alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class BeamSearch:
    """The beam search over `processes` workers: threads for the C++ decoder (its calls
    release the GIL and share one loaded LM), processes forked once for pyctcdecode's
    (pure Python, which threads would run one at a time).

    `decode` spreads clips over the workers (eval.py). `decode_grid` spreads LM weight
    settings over them, each decoding all of `logits_list` (tuning): the clips reach the
    workers with the fork or the shared memory, not again with every task.
    """

    def __init__(self, decoder, processes: int, logits_list: list = ()):
        global _worker_decoder, _worker_logits
        self.decoder = decoder
        self.logits_list = list(logits_list)
        self.beam_width = DEFAULT_BEAM_WIDTH  # the pipeline's, as it passes none
        _worker_decoder, _worker_logits = decoder, self.logits_list
        self.pool = None
        if processes > 1 and decoder.engine == CPP_ENGINE:
            self.pool = multiprocessing.pool.ThreadPool(processes)
        elif processes > 1 and "fork" in multiprocessing.get_all_start_methods():
            self.pool = multiprocessing.get_context("fork").Pool(processes, initializer=_ignore_interrupts)

    @property
    def settings(self) -> dict:
        return {"alpha": self.decoder.files.alpha, "beta": self.decoder.files.beta, "beam_width": self.beam_width,
                "engine": self.decoder.engine}

    def decode(self, logits_list: list) -> list[str]:
        """The best-beam text of each clip's logits, in order."""
        if self.pool is None:
            return [self.decoder.best_text(logits, self.beam_width) for logits in logits_list]
        return self.pool.map(_worker_best_beam, logits_list)

    def decode_grid(self, cells: list[tuple[float, float, int]]):
        """(cell, texts of every clip) for each (alpha, beta, beam width), as they finish;
        one task per alpha and beta, so that each decoder is built once."""
        widths: dict[tuple[float, float], list[int]] = {}
        for alpha, beta, width in cells:
            widths.setdefault((alpha, beta), []).append(width)
        tasks = [(alpha, beta, tuple(beam_widths)) for (alpha, beta), beam_widths in widths.items()]
        if self.pool is None:
            finished = (decode_weights(self.decoder, self.logits_list, task) for task in tasks)
        else:
            finished = self.pool.imap_unordered(_worker_weights, tasks)
        return (cell for results in finished for cell in results)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> "BeamSearch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
