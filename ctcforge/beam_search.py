"""The n-gram LM side of decoding: finding and loading a repo's language model and running
pyctcdecode's beam search over it, as eval.py and `ctcforge lm` tuning both do.

This file is copied unchanged into every generated repo, beside eval.py, which imports it;
ctcforge imports the same file as `ctcforge.beam_search` (the card asks whether there is an
LM, the LM builder maps the vocabulary to labels), so it imports no repo sibling, and
pyctcdecode only where a decoder is made.

The search is the one transformers' ASR pipeline runs: the text of the best beam of
`decode_beams` (pyctcdecode's `decode` prunes beam histories instead, which can end on
another beam), in a pool of processes forked once the LM is loaded.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal

LANGUAGE_MODEL_DIR = "language_model"
ALPHABET_FILE = "alphabet.json"
ATTRS_FILE = "attrs.json"
UNIGRAMS_FILE = "unigrams.txt"
# The files pyctcdecode loads as a KenLM model.
KENLM_EXTENSIONS = (".arpa", ".bin", ".binary")
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


def ctc_labels(tokenizer, vocab_size: int) -> list[str]:
    """The model's output labels in id order, as pyctcdecode wants them: the blank
    (padding token) as "" and the word delimiter as " "."""
    token_by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    missing = [index for index in range(vocab_size) if index not in token_by_id]
    if missing:
        raise ValueError(f"the tokenizer has no token for output ids {missing[:5]}")
    labels = [token_by_id[index] for index in range(vocab_size)]
    delimiter = getattr(tokenizer, "word_delimiter_token", None)
    return ["" if t == tokenizer.pad_token else " " if t == delimiter else t for t in labels]


def load_beam_decoder(model_dir: str, tokenizer, vocab_size: int):
    """pyctcdecode's beam search decoder with the folder's n-gram LM, checked to have one
    label per model output, each the tokenizer's for that id. Raises ValueError, naming
    the file and the fix, for an LM that does not fit the model or does not load.

    pyctcdecode's own layout (`alphabet.json` beside `language_model/`, as `ctcforge lm`
    and `Wav2Vec2ProcessorWithLM.save_pretrained` write it) loads as it is. Otherwise the
    decoder is built from the model's vocabulary and the files in `language_model/`:
    one KenLM file, and `unigrams.txt` and `attrs.json` (alpha, beta, ...) when present.
    """
    from pyctcdecode import BeamSearchDecoderCTC, build_ctcdecoder

    lm_dir = os.path.join(model_dir, LANGUAGE_MODEL_DIR)
    if os.path.isfile(os.path.join(model_dir, ALPHABET_FILE)):
        problems = lm_dir_problems(lm_dir)
        if problems:  # pyctcdecode would say "wrong number of files" without naming them
            raise ValueError(f"{problems[0]}; remove what is extra, or {REBUILD}")
        kenlm_file = next(name for name in visible_files(lm_dir) if name.endswith(KENLM_EXTENSIONS))
        with kenlm_load_errors(os.path.join(lm_dir, kenlm_file)):
            decoder = BeamSearchDecoderCTC.load_from_dir(model_dir)
        check_alphabet(decoder, tokenizer, vocab_size)
        return decoder
    kenlm_files = sorted(f for f in os.listdir(lm_dir) if f.endswith(KENLM_EXTENSIONS))
    if len(kenlm_files) != 1:
        expected = ", ".join(KENLM_EXTENSIONS)
        raise ValueError(f"{lm_dir} should hold one KenLM file ({expected}), not {kenlm_files}")
    unigrams = None
    if os.path.isfile(os.path.join(lm_dir, UNIGRAMS_FILE)):
        with open(os.path.join(lm_dir, UNIGRAMS_FILE), encoding="utf-8") as file:
            unigrams = [line.strip() for line in file if line.strip()]
    attrs = {}
    if os.path.isfile(os.path.join(lm_dir, ATTRS_FILE)):
        with open(os.path.join(lm_dir, ATTRS_FILE), encoding="utf-8") as file:
            attrs = json.load(file)
    if "score_boundary" in attrs:  # attrs.json and build_ctcdecoder name this one differently
        attrs["lm_score_boundary"] = attrs.pop("score_boundary")
    kenlm_path = os.path.join(lm_dir, kenlm_files[0])
    with kenlm_load_errors(kenlm_path):
        return build_ctcdecoder(ctc_labels(tokenizer, vocab_size), kenlm_model_path=kenlm_path, unigrams=unigrams,
                                **attrs)


@contextlib.contextmanager
def kenlm_load_errors(kenlm_path: str):
    """KenLM's OSError for a file it cannot read ("Cannot read model ... End of file") as a
    ValueError naming the file and the fix."""
    try:
        yield
    except OSError as error:
        relative = os.path.join(LANGUAGE_MODEL_DIR, os.path.basename(kenlm_path))
        raise ValueError(f"{relative} is damaged or cut short ({error}): {REBUILD}") from None


def check_alphabet(decoder, tokenizer, vocab_size: int) -> None:
    """pyctcdecode needs one label per model output, in the tokenizer's order: an
    alphabet.json of another vocabulary (labels swapped, or of an older vocab.json) of the
    right length would decode every clip into other letters without a word."""
    from pyctcdecode.alphabet import Alphabet

    found = decoder._alphabet.labels  # pyctcdecode 0.5 has no public name for it
    if len(found) != vocab_size:
        raise ValueError(f"the LM decoder's {ALPHABET_FILE} has {len(found)} labels but the model writes "
                         f"{vocab_size}; {REBUILD}")
    # pyctcdecode's own spelling of the tokenizer's labels ([UNK] becomes "⁇"), as `ctcforge lm` writes them.
    expected = Alphabet.build_alphabet(ctc_labels(tokenizer, vocab_size)).labels
    differ = [index for index in range(vocab_size) if found[index] != expected[index]]
    if differ:
        shown = ", ".join(f"id {i}: {found[i]!r} for {expected[i]!r}" for i in differ[:5])
        raise ValueError(f"the LM decoder's {ALPHABET_FILE} does not follow vocab.json ({len(differ)} labels "
                         f"differ: {shown}); it was built for another vocabulary: {REBUILD}")


def best_beam_text(decoder, logits, beam_width: int | None = None) -> str:
    """What the pipeline's LM decoding returns: the text of `decode_beams`' best beam, at
    pyctcdecode's default beam width (the pipeline passes none) unless one is given."""
    if beam_width is None:
        return decoder.decode_beams(logits)[0][0]
    return decoder.decode_beams(logits, beam_width=beam_width)[0][0]


def decode_cell(decoder, logits_list: list, cell: tuple[float, float, int]) -> tuple[tuple, list[str]]:
    """Every clip's best-beam text at one (alpha, beta, beam width), with the cell."""
    alpha, beta, beam_width = cell
    decoder.reset_params(alpha=float(alpha), beta=float(beta))
    return cell, [best_beam_text(decoder, logits, int(beam_width)) for logits in logits_list]


# What a forked worker decodes with. Set before the fork and inherited, never pickled:
# pyctcdecode keeps the KenLM model in a class attribute that pickling skips.
_worker_decoder = None
_worker_logits: list = []


def _worker_best_beam(logits) -> str:
    return best_beam_text(_worker_decoder, logits)


def _worker_cell(cell: tuple[float, float, int]) -> tuple[tuple, list[str]]:
    return decode_cell(_worker_decoder, _worker_logits, cell)


def _ignore_interrupts() -> None:
    """Ctrl-C in a terminal reaches the whole process group. Workers that died of it would
    leave Pool.terminate() waiting for them for good; the parent alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class BeamSearch:
    """pyctcdecode's beam search over a pool of `processes` processes, forked once.

    `decode` spreads clips over the workers (eval.py). `decode_grid` spreads LM weight
    settings over them, each decoding all of `logits_list` (tuning): the clips are handed
    to the workers by the fork, not sent again with every task. Weights set in this
    process after the fork would not reach a worker, so each grid task sets its own.
    """

    def __init__(self, decoder, processes: int, logits_list: list = ()):
        from pyctcdecode.constants import DEFAULT_BEAM_WIDTH

        global _worker_decoder, _worker_logits
        self.decoder = decoder
        self.logits_list = list(logits_list)
        self.beam_width = DEFAULT_BEAM_WIDTH  # the pipeline's, as decode_beams is called without one
        _worker_decoder, _worker_logits = decoder, self.logits_list
        can_fork = "fork" in multiprocessing.get_all_start_methods()
        self.pool = (multiprocessing.get_context("fork").Pool(processes, initializer=_ignore_interrupts)
                     if processes > 1 and can_fork else None)

    @property
    def settings(self) -> dict:
        language_model = self.decoder._language_model  # pyctcdecode 0.5 has no public accessor
        return {"alpha": language_model.alpha, "beta": language_model.beta, "beam_width": self.beam_width}

    def decode(self, logits_list: list) -> list[str]:
        """The best-beam text of each clip's logits, in order."""
        if self.pool is None:
            return [best_beam_text(self.decoder, logits) for logits in logits_list]
        return self.pool.map(_worker_best_beam, logits_list)

    def decode_grid(self, cells: list[tuple[float, float, int]]):
        """(cell, texts of every clip) for each (alpha, beta, beam width), as they finish."""
        if self.pool is None:
            return (decode_cell(self.decoder, self.logits_list, cell) for cell in cells)
        return self.pool.imap_unordered(_worker_cell, cells)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> "BeamSearch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
