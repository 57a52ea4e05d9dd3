"""The shared beam search (ctcforge/beam_search.py, shipped to every repo): the C++ decoder
gives pyctcdecode's text, clip for clip, over a table of LM files and settings, on
synthetic logits and a tiny KenLM built here; pyctcdecode takes over, saying so once, where
the C++ package cannot load. (The same equality on a trained model's test split is in
test_lm.py, beside its trained repo.)"""

import json
import shutil
import sys

import numpy as np
import pytest

from ctcforge.kenlm_tools import run_build_binary, run_lmplz
from ctcforge.lm import write_unigrams
from ctcforge.lm_folder import write_alphabet, write_attrs
from ctcforge.runtime import beam_search
from ctcforge.runtime.beam_search import CPP_ENGINE, PYTHON_ENGINE, BeamSearch, load_beam_decoder
from ctcforge.runtime.errors import CtcforgeError

WORDS = ["dog", "door", "dot", "tore", "rot", "bead", "bean", "note", "tone", "bard", "road", "bone"]
# The tokenizer's vocabulary, in id order: the blank, the word delimiter, letters, unknown.
VOCAB = ["[PAD]", "|", *sorted(set("".join(WORDS))), "[UNK]"]
BLANK, DELIMITER = 0, 1
# Letters the acoustic model confuses: each is given a near-peak where the other is spoken.
CONFUSED = {"d": "t", "t": "d", "b": "d", "n": "r", "r": "n", "a": "e", "e": "a", "o": "a"}


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory):
    """A 3-gram over sentences of WORDS drawn with a fixed seed, as an ARPA and a binary."""
    work = tmp_path_factory.mktemp("kenlm")
    rng = np.random.default_rng(0)
    weights = np.linspace(3, 1, len(WORDS))
    sentences = [" ".join(rng.choice(WORDS, size=rng.integers(2, 6), p=weights / weights.sum()))
                 for _ in range(400)]
    (work / "corpus.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    run_lmplz(work / "corpus.txt", work / "lm.arpa", order=3, prune=(), memory="10%", temp_dir=work,
              progress=False)
    run_build_binary(work / "lm.arpa", work / "lm.binary", progress=False)
    return work


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import Wav2Vec2CTCTokenizer

    vocab = tmp_path_factory.mktemp("tokenizer") / "vocab.json"
    vocab.write_text(json.dumps({token: index for index, token in enumerate(VOCAB)}), encoding="utf-8")
    return Wav2Vec2CTCTokenizer(str(vocab), unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|")


def spoken_logits(text: str, rng) -> np.ndarray:
    """Frames a weak acoustic model might write for `text`: each letter over 1-3 frames,
    blanks between, a confusable letter nearly as likely, noise everywhere."""
    frames = []
    for char in text:
        label = DELIMITER if char == " " else VOCAB.index(char)
        for _ in range(rng.integers(1, 4)):
            frame = rng.normal(0, 1.0, len(VOCAB))
            frame[label] += 4.0
            if char in CONFUSED:
                frame[VOCAB.index(CONFUSED[char])] += 3.6
            frames.append(frame)
        blank = rng.normal(0, 1.0, len(VOCAB))
        blank[BLANK] += 4.5
        frames.append(blank)
    return np.asarray(frames, dtype=np.float32)


@pytest.fixture(scope="module")
def clips():
    """Sentences the LM knows and sentences of unknown words, as raw logits (eval.py's input)."""
    rng = np.random.default_rng(1)
    texts = ["dog bone road", "note bone tone", "bean door", "bard rot tore", "road dot bead", "tone bone",
             "bad nod rat", "toad era", "dog dog dog dot", "bean", "doe", "nob tab dent"]
    return [spoken_logits(text, rng) for text in texts]


def lm_folder(root, lm_files, tokenizer, *, kenlm="lm.binary", alphabet=True, unigrams=True, **attrs):
    """A model folder's LM as `ctcforge lm` lays it out (alphabet.json, language_model/ with
    attrs.json, unigrams.txt and one KenLM file), or the parts a case leaves out."""
    from pyctcdecode.alphabet import Alphabet

    lm_dir = root / "language_model"
    lm_dir.mkdir(parents=True)
    shutil.copy(lm_files / kenlm, lm_dir / kenlm)
    write_attrs(lm_dir, attrs.pop("alpha", 0.5), attrs.pop("beta", 1.5))
    if attrs:
        saved = json.loads((lm_dir / "attrs.json").read_text(encoding="utf-8"))
        (lm_dir / "attrs.json").write_text(json.dumps({**saved, **attrs}), encoding="utf-8")
    if unigrams:
        write_unigrams(lm_files / "lm.arpa", lm_dir / "unigrams.txt", progress=False)
    if alphabet:
        labels = beam_search.ctc_labels(tokenizer, len(VOCAB))
        write_alphabet(Alphabet.build_alphabet(labels).labels, root)  # pyctcdecode's spelling, as `ctcforge lm`
    return root


def decode_both(folder, tokenizer, clips, beam_width, processes=0):
    texts = {}
    for engine in (CPP_ENGINE, PYTHON_ENGINE):
        decoder = load_beam_decoder(str(folder), tokenizer, len(VOCAB), engine=engine)
        assert decoder.engine == engine
        with BeamSearch(decoder, processes) as search:
            search.beam_width = beam_width
            texts[engine] = search.decode(clips)
    return texts


@pytest.mark.parametrize("layout, beam_width", [
    ({}, 100),  # what `ctcforge lm` writes, at pyctcdecode's defaults
    ({"alpha": 0.0, "beta": 0.0}, 100),
    ({"alpha": 2.0, "beta": 3.0}, 100),
    ({"alpha": 1.0, "beta": 0.5}, 4),  # a narrow beam prunes the most
    ({"alpha": 0.7, "beta": 2.0, "unk_score_offset": -3.0, "score_boundary": False}, 25),
    ({"kenlm": "lm.arpa"}, 50),
    ({"alphabet": False}, 100),  # labels from the tokenizer ([UNK] normalised by each decoder)
    ({"alphabet": False, "unigrams": False, "kenlm": "lm.arpa"}, 100),  # words read from the ARPA
    ({"alphabet": False, "unigrams": False}, 100),  # a binary and no words: every prefix is unknown
])
def test_cpp_decoder_gives_pyctcdecodes_text(lm_files, tokenizer, clips, tmp_path, layout, beam_width):
    folder = lm_folder(tmp_path / "model", lm_files, tokenizer, **layout)
    texts = decode_both(folder, tokenizer, clips, beam_width)
    assert texts[CPP_ENGINE] == texts[PYTHON_ENGINE]


def test_the_synthetic_clips_are_ones_the_lm_and_the_beam_change(lm_files, tokenizer, clips, tmp_path):
    """Without this the table above could pass on text that no setting changes."""
    greedy = [tokenizer.decode(logits.argmax(-1).tolist()) for logits in clips]
    weak = decode_both(lm_folder(tmp_path / "weak", lm_files, tokenizer, alpha=0.0, beta=0.0), tokenizer, clips,
                       100)[CPP_ENGINE]
    strong = decode_both(lm_folder(tmp_path / "strong", lm_files, tokenizer, alpha=2.0, beta=3.0), tokenizer,
                         clips, 100)[CPP_ENGINE]
    assert sum(g != s for g, s in zip(greedy, strong)) >= 3 and sum(w != s for w, s in zip(weak, strong)) >= 3
    assert len(set(strong)) == len(clips) and all(strong)


def test_threads_and_a_weights_grid_give_the_one_process_text(lm_files, tokenizer, clips, tmp_path):
    folder = lm_folder(tmp_path / "model", lm_files, tokenizer)
    log_probs = [logits - np.log(np.exp(logits).sum(-1, keepdims=True)) for logits in clips[:8]]
    cells = [(alpha, beta, width) for alpha in (0.0, 1.5) for beta in (0.0, 2.0) for width in (8, 32)]
    grids = {}
    # In one process, over threads, and pyctcdecode over forked processes.
    for engine, processes in ((CPP_ENGINE, 0), (CPP_ENGINE, 2), (PYTHON_ENGINE, 2)):
        decoder = load_beam_decoder(str(folder), None, None, engine=engine)
        with BeamSearch(decoder, processes, log_probs) as search:
            assert (search.pool is None) == (processes == 0)
            grids[engine, processes] = dict(search.decode_grid(cells))
    assert sorted(grids[CPP_ENGINE, 0]) == sorted(cells)
    assert all(grid == grids[CPP_ENGINE, 0] for grid in grids.values())
    # The cells differ, so equal grids mean each cell was decoded at its own weights.
    assert len({tuple(texts) for texts in grids[CPP_ENGINE, 0].values()}) > 2


def test_without_the_cpp_package_pyctcdecode_decodes_and_it_is_said_once(lm_files, tokenizer, clips, tmp_path,
                                                                       monkeypatch, capsys):
    folder = lm_folder(tmp_path / "model", lm_files, tokenizer)
    expected = decode_both(folder, tokenizer, clips[:3], 100)[CPP_ENGINE]
    monkeypatch.setitem(sys.modules, "ctc_beam_decoder", None)  # import fails as when no wheel fits
    monkeypatch.setattr(beam_search, "_said_fallback", False)
    decoders = [load_beam_decoder(str(folder), tokenizer, len(VOCAB)) for _ in range(2)]
    assert [d.engine for d in decoders] == [PYTHON_ENGINE, PYTHON_ENGINE]
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and said[0].startswith(f"{CPP_ENGINE} cannot be loaded (") and PYTHON_ENGINE in said[0]
    with BeamSearch(decoders[0], 0) as search:
        assert search.decode(clips[:3]) == expected
    with pytest.raises(ImportError):  # asked for by name, it is not replaced
        load_beam_decoder(str(folder), tokenizer, len(VOCAB), engine=CPP_ENGINE)


def test_defaults_are_pyctcdecodes():
    from pyctcdecode import constants

    assert (beam_search.DEFAULT_ALPHA, beam_search.DEFAULT_BETA, beam_search.DEFAULT_BEAM_WIDTH,
            beam_search.DEFAULT_UNK_SCORE_OFFSET, beam_search.DEFAULT_SCORE_BOUNDARY) == (
        constants.DEFAULT_ALPHA, constants.DEFAULT_BETA, constants.DEFAULT_BEAM_WIDTH,
        constants.DEFAULT_UNK_LOGP_OFFSET, constants.DEFAULT_SCORE_LM_BOUNDARY)


def test_attrs_that_pyctcdecode_refuses_are_one_error(lm_files, tokenizer, tmp_path):
    folder = lm_folder(tmp_path / "model", lm_files, tokenizer, lm_weight=1.0)
    with pytest.raises(CtcforgeError, match=r"attrs.json holds \['lm_weight'\], which pyctcdecode refuses"):
        load_beam_decoder(str(folder), tokenizer, len(VOCAB))
