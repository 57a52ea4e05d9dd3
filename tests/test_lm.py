"""`ctcforge lm`: the n-gram LM's text, build, layout, loading by pyctcdecode, eval.py and
transformers' pipeline, and weight tuning, on synthesised speech and a tiny model trained here."""

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import needs_speech, read_tsv, run_eval, run_script, succeeded, synthesised_release

from ctcforge.cli import main
from ctcforge.kenlm_tools import ensure_end_of_sentence_unigram, find_tool
from ctcforge.lm import TextSources, build_language_model
from ctcforge.lm_folder import check_language_model_dir, read_attrs, update_attrs
from ctcforge.lm_text import repo_normalizer
from ctcforge.lm_tuning import TuningGrid, tune_language_model
from ctcforge.new import new_repo
from ctcforge.runtime.beam_search import has_language_model
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.synth import load_sentences, sentences_for

LM_FILES = ["attrs.json", "lm.binary", "unigrams.txt"]


def quiet(*_):
    pass


def write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def build(repo, text_file, **options):
    messages = []
    report = build_language_model(repo, TextSources(files=[text_file]), order=3, progress=False,
                                  log=messages.append, **options)
    return report, messages


# `stamped_repo`, a repo without a dataset or training (enough for text and consistency
# checks), is conftest's.


@pytest.fixture(scope="module")
def trained_repo(tmp_path_factory):
    """A tiny model trained a few steps on 60 synthesised Armenian clips."""
    release = synthesised_release(tmp_path_factory.mktemp("lm") / "cv", 60, seed=3)
    repo = new_repo("hy-AM", release.parent / "repo", base_model="tiny", dataset=str(release))
    succeeded(run_script(repo, "--model_name_or_path", "./", "--dataset_name", release, "--dataset_config_name",
                         "hy-AM", "--train_split_name", "train", "--output_dir", "./", "--max_steps", "12",
                         "--per_device_train_batch_size", "8", "--learning_rate", "2e-3", "--do_train", "--use_cpu",
                         "--report_to", "none", "--save_strategy", "no", "--logging_steps", "4"))
    return repo, release


@pytest.fixture(scope="module")
def lm_repo(trained_repo, tmp_path_factory):
    """The trained repo with an LM from every sentence of the sentence file (test ones are left out)."""
    repo, release = trained_repo
    (repo / "processor_config.json").write_text("{}", encoding="utf-8")  # as save_pretrained leaves it
    text = write_lines(tmp_path_factory.mktemp("text") / "all.txt", load_sentences("hy-AM"))
    report, messages = build(repo, text)
    return repo, release, report, messages


# ---------------------------------------------------------------------------- the ARPA file

ARPA_HEAD = "\\data\\\nngram 1={count}\nngram 2=1\n\n\\1-grams:\n"
ARPA_TAIL = "\n\\2-grams:\n-0.3\t<s> բարև\n\n\\end\\\n"
UNIGRAMS = "-1.2\t<unk>\t0\n0\t<s>\t-0.2\n-0.6\tբարև\t-0.1\n"


@pytest.mark.parametrize("unigrams, count, changed", [
    (UNIGRAMS, 3, True),
    (UNIGRAMS + "-0.5\t</s>\t0\n", 4, False),
])
def test_end_of_sentence_unigram_is_added_only_when_missing(tmp_path, unigrams, count, changed):
    import kenlm

    arpa = tmp_path / "lm.arpa"
    original = ARPA_HEAD.format(count=count) + unigrams + ARPA_TAIL
    arpa.write_text(original, encoding="utf-8")
    assert ensure_end_of_sentence_unigram(arpa, -0.7) is changed
    text = arpa.read_text(encoding="utf-8")
    if changed:
        assert "ngram 1=4\n" in text and "-0.7000000\t</s>\t0\n" in text
    else:
        assert text == original
    assert text.count("\t</s>\t") == 1
    assert "</s>" in kenlm.Model(str(arpa))  # still an ARPA kenlm reads


# ---------------------------------------------------------------------------- the folder contract


def lm_layout(repo):
    (repo / "language_model").mkdir(parents=True)
    (repo / "alphabet.json").write_text("{}", encoding="utf-8")
    for name in LM_FILES:
        (repo / "language_model" / name).write_text("x", encoding="utf-8")


@pytest.mark.parametrize("change, message", [
    (lambda lm: (lm / "notes.txt").write_text("x"),
     "expected 3 files (attrs.json, unigrams.txt, one KenLM file), found 4: attrs.json, lm.binary, notes.txt, "
     "unigrams.txt; extra: notes.txt"),
    (lambda lm: (lm / "unigrams.txt").unlink(),
     "expected 3 files (attrs.json, unigrams.txt, one KenLM file), found 2: attrs.json, lm.binary; "
     "missing: unigrams.txt"),
    (lambda lm: (lm / "lm.arpa").write_text("x"), "found 4: attrs.json, lm.arpa, lm.binary, unigrams.txt; extra: lm.binary"),
    (lambda lm: (lm.parent / "alphabet.json").unlink(), "alphabet.json is missing"),
])
def test_checker_names_what_is_missing_or_extra(tmp_path, change, message):
    lm_layout(tmp_path)
    check_language_model_dir(tmp_path)  # the layout itself passes
    (tmp_path / "language_model" / ".hidden").write_text("x")  # pyctcdecode ignores hidden files
    check_language_model_dir(tmp_path)
    change(tmp_path / "language_model")
    with pytest.raises(CtcforgeError) as error:
        check_language_model_dir(tmp_path)
    assert message in str(error.value)


@needs_speech
def test_build_writes_exactly_the_pyctcdecode_layout(lm_repo):
    repo, _, _, messages = lm_repo
    check_language_model_dir(repo)
    assert sorted(os.listdir(repo / "language_model")) == LM_FILES
    alphabet = json.loads((repo / "alphabet.json").read_text(encoding="utf-8"))
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    assert alphabet["is_bpe"] is False and len(alphabet["labels"]) == len(vocab)
    assert alphabet["labels"][vocab["|"]] == " " and alphabet["labels"][vocab["[PAD]"]] == ""
    assert set(read_attrs(repo / "language_model")) == {"alpha", "beta", "unk_score_offset", "score_boundary"}
    preprocessor = json.loads((repo / "preprocessor_config.json").read_text(encoding="utf-8"))
    assert preprocessor["processor_class"] == "Wav2Vec2ProcessorWithLM"
    assert not (repo / "processor_config.json").exists()
    assert any("removed processor_config.json" in m for m in messages)
    assert not [p for p in (repo / ".ctcforge-cache").iterdir() if p.name.startswith("lm-build-")]


@needs_speech
def test_a_failed_build_leaves_the_previous_lm(lm_repo, tmp_path, monkeypatch):
    repo, _, _, _ = lm_repo
    before = {name: (repo / "language_model" / name).read_bytes() for name in LM_FILES}

    def broken_build_binary(*args, **kwargs):
        raise CtcforgeError("build_binary failed")

    monkeypatch.setattr("ctcforge.lm.run_build_binary", broken_build_binary)
    with pytest.raises(CtcforgeError, match="build_binary failed"):
        build(repo, write_lines(tmp_path / "other.txt", ["մի նոր նախադասություն"]))
    assert {name: (repo / "language_model" / name).read_bytes() for name in LM_FILES} == before
    assert not [p for p in (repo / ".ctcforge-cache").iterdir() if p.name.startswith("lm-build-")]


# ---------------------------------------------------------------------------- the text


@needs_speech
@pytest.mark.parametrize("allow", [False, True])
def test_leakage_guard_leaves_out_and_counts_test_sentences(trained_repo, tmp_path, capsys, allow):
    repo, release = trained_repo
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))
    normalize = repo_normalizer(repo)
    test = {normalize(s) for s in sentences_for("hy-AM", "test")}
    train = {normalize(s) for s in sentences_for("hy-AM", "train")}
    # A word heard only in test sentences must reach the LM only when they are allowed.
    test_only_word = min(set(" ".join(test).split()) - set(" ".join(train).split()))
    text = write_lines(tmp_path / "text.txt", sorted(test | train))
    args = ["lm", str(repo), "--text", str(text), "--order", "3", "--quiet"]
    assert main(args + ["--allow-test-sentences"] * allow) == 0
    printed = capsys.readouterr().out
    unigrams = (repo / "language_model" / "unigrams.txt").read_text(encoding="utf-8").split()
    if allow:
        assert "0 test-split sentences left out" in printed and f"{len(test | train)} sentences" in printed
        assert test_only_word in unigrams
    else:
        assert f"{len(test)} test-split sentences left out; {len(train)} sentences" in printed
        assert test_only_word not in unigrams


@pytest.mark.parametrize("lines, message", [
    ([], "no LM text is left (0 lines read"),
    (["", "   "], "no LM text is left (2 lines read, 2 empty after the repo normaliser)"),
    (["«...»", "!!! ? —", "։ ՝ ՞"], "no LM text is left (3 lines read, 3 empty after the repo normaliser)"),
    (["the quick brown fox", "jumps over the lazy dog"], "none of the LM text is in the hy-AM alphabet"),
])
def test_text_that_would_make_an_empty_or_useless_lm_is_refused(stamped_repo, tmp_path, lines, message):
    with pytest.raises(CtcforgeError) as error:
        build(stamped_repo, write_lines(tmp_path / "text.txt", lines))
    assert message in str(error.value)
    assert not (stamped_repo / "alphabet.json").exists()


def test_text_in_another_script_is_reported(stamped_repo, tmp_path):
    repo = Path(shutil.copytree(stamped_repo, tmp_path / "repo"))
    lines = ["ես գիրք եմ կարդում", "the quick brown fox", "jumps over the lazy dog", "и ещё немного"]
    report, messages = build(repo, write_lines(tmp_path / "text.txt", lines))
    warning = next(m for m in messages if m.startswith("warning:"))
    assert "3 of 4 LM sentences hold characters outside the hy-AM alphabet" in warning
    assert "'o' x4" in warning and "most of the text is in another script" in warning
    assert report.foreign_sentences == 3 and report.sentences == 4


def test_a_byte_order_mark_does_not_become_part_of_a_word(stamped_repo, tmp_path):
    repo = Path(shutil.copytree(stamped_repo, tmp_path / "repo"))
    text = tmp_path / "bom.txt"
    text.write_text("ես գիրք եմ կարդում\nնա գիրք է կարդում\n", encoding="utf-8-sig")
    assert text.read_bytes().startswith(b"\xef\xbb\xbf")
    build(repo, text)
    unigrams = (repo / "language_model" / "unigrams.txt").read_text(encoding="utf-8").split()
    assert "ես" in unigrams and not any("\ufeff" in word for word in unigrams)


def test_validated_sentences_tsv_is_read_by_its_sentence_column(stamped_repo, tmp_path):
    """Common Voice's validated_sentences.tsv as LM text: the sentences, not the ids and
    domains around them."""
    repo = Path(shutil.copytree(stamped_repo, tmp_path / "repo"))
    tsv = tmp_path / "validated_sentences.tsv"
    tsv.write_text("sentence_id\tsentence\tsentence_domain\tsource\tis_used\tclips_count\n"
                   "a1b2\tես գիրք եմ կարդում\tgeneral\twikipedia\t1\t3\n"
                   "c3d4\tնա գիրք է կարդում\t\tuser\t1\t0\n", encoding="utf-8")
    report, _ = build(repo, tsv)
    unigrams = set((repo / "language_model" / "unigrams.txt").read_text(encoding="utf-8").split())
    assert {"ես", "գիրք", "կարդում", "նա"} <= unigrams
    assert not unigrams & {"a1b2", "general", "wikipedia", "sentence_id", "1"}
    assert report.sentences == 2


def test_cli_prints_one_line_errors(stamped_repo, tmp_path, capsys):
    empty = write_lines(tmp_path / "empty.txt", [])
    assert main(["lm", str(stamped_repo), "--text", str(empty), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ctcforge: error: no LM text is left") and error.count("\n") == 1


# ---------------------------------------------------------------------------- the environment


@pytest.mark.parametrize("broken", [False, True])
def test_missing_or_broken_lmplz_names_setup(stamped_repo, tmp_path, monkeypatch, broken):
    venv_bin = tmp_path / "bin"
    venv_bin.mkdir()
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    if broken:  # a file that is executable but no program
        for tool in ("lmplz", "build_binary"):
            (venv_bin / tool).write_bytes(b"\x7fELF not really")
            (venv_bin / tool).chmod(0o755)
        assert find_tool("lmplz") == venv_bin / "lmplz"
    text = write_lines(tmp_path / "text.txt", ["ես գիրք եմ կարդում"])
    repo = Path(shutil.copytree(stamped_repo, tmp_path / "repo"))
    with pytest.raises(CtcforgeError) as error:
        build(repo, text)
    assert "lmplz" in str(error.value) and "./setup.sh" in str(error.value)


def test_hidden_files_make_no_language_model(tmp_path):
    """One answer for eval.py's --decoder auto and the card: dotfiles (.gitkeep) do not count."""
    lm_dir = tmp_path / "language_model"
    assert not has_language_model(str(tmp_path))
    lm_dir.mkdir()
    (lm_dir / ".gitkeep").write_text("")
    assert not has_language_model(str(tmp_path))
    (lm_dir / "lm.binary").write_text("x")
    assert has_language_model(str(tmp_path))


@pytest.mark.parametrize("edit, names", [
    # transformers 5 gives a Wav2Vec2CTCTokenizer <s> and </s> unless told not to
    (lambda repo, n: edit_json(repo / "tokenizer_config.json", lambda c: [c.pop("bos_token"), c.pop("eos_token")]),
     lambda n: [f"'<s>' (id {n})", f"'</s>' (id {n + 1})"]),
    (lambda repo, n: edit_json(repo / "vocab.json", lambda v: v.update({"Ա": v.pop("ա")})), lambda n: ["'Ա'"]),
    (lambda repo, n: edit_json(repo / "config.json", lambda c: c.update(vocab_size=n + 2)),
     lambda n: [f"output ids {n}, {n + 1}"]),
])
def test_tokenizer_model_and_alphabet_must_agree(stamped_repo, tmp_path, edit, names):
    repo = Path(shutil.copytree(stamped_repo, tmp_path / "repo"))
    vocab_size = len(json.loads((repo / "vocab.json").read_text(encoding="utf-8")))
    edit(repo, vocab_size)
    with pytest.raises(CtcforgeError) as error:
        build(repo, write_lines(tmp_path / "text.txt", ["ես գիրք եմ կարդում"]))
    assert str(error.value).startswith(f"{repo}: ") and "\n" not in str(error.value)
    for name in names(vocab_size):
        assert name in str(error.value)


def edit_json(path, change):
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------------------- loading


def clip_paths(release, split, count):
    _, rows = read_tsv(release / "hy-AM" / f"{split}.tsv")
    return [str(release / "hy-AM" / "clips" / row["path"]) for row in rows[:count]]


@needs_speech
def test_pipeline_decodes_with_the_lm(lm_repo, tmp_path):
    from transformers import Wav2Vec2ProcessorWithLM, pipeline

    repo, release, _, _ = lm_repo
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))
    update_attrs(repo / "language_model", alpha=2.0, beta=6.0)  # weights that must change the output
    with_lm = pipeline("automatic-speech-recognition", model=str(repo))
    assert with_lm.type == "ctc_with_lm"
    greedy = pipeline("automatic-speech-recognition", model=with_lm.model, tokenizer=with_lm.tokenizer,
                      feature_extractor=with_lm.feature_extractor)
    assert greedy.type == "ctc"
    clips = clip_paths(release, "dev", 4)
    assert any(with_lm(clip)["text"] != greedy(clip)["text"] for clip in clips)

    processor = Wav2Vec2ProcessorWithLM.from_pretrained(str(repo))
    assert processor.language_model.alpha == 2.0 and processor.language_model.beta == 6.0
    assert type(processor.feature_extractor).__name__ == "SeamlessM4TFeatureExtractor"  # the tiny model's


@needs_speech
def test_eval_decodes_with_the_lm(lm_repo, tmp_path):
    repo, release, _, _ = lm_repo
    run_eval(repo, "--dataset", release, "--config", "hy-AM", "--split", "test", "--decoder", "lm",
             "--output_dir", tmp_path)
    assert (tmp_path / "cv_hy-AM_test_eval_results.txt").read_text().startswith("WER: ")


# ---------------------------------------------------------------------------- tuning


@needs_speech
def test_tuning_picks_the_best_cell_of_its_grid_and_writes_it(lm_repo, tmp_path):
    repo, release, _, _ = lm_repo
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))
    messages = []
    grid = TuningGrid(alphas=(2.0,), betas=(6.0,), beam_widths=(16,))  # the defaults are added
    best = tune_language_model(repo, str(release), "hy-AM", "dev", grid=grid, progress=False, log=messages.append)

    rows = list(csv.DictReader(open(repo / "lm_tuning" / "wer_grid.csv", encoding="utf-8")))
    assert list(rows[0]) == ["alpha", "beta", "beam_width", "wer", "cer"] and len(rows) == 2 * 2 * 2
    cells = [(float(r["alpha"]), float(r["beta"]), int(r["beam_width"]), float(r["wer"]), float(r["cer"]))
             for r in rows]
    default = next(cell for cell in cells if cell[:3] == (0.5, 1.5, 100))
    assert best["default_wer"] == default[3] and best["default_cer"] == default[4]
    # The chosen cell is the grid's argmin as written (WER, then CER; ties to the smaller beam,
    # then to the weights nearest the defaults), not merely a WER no worse than the defaults'.
    chosen = min(cells, key=lambda c: (c[3], c[4], c[2], abs(c[0] - 0.5) + abs(c[1] - 1.5)))
    assert (best["alpha"], best["beta"], best["beam_width"], best["wer"], best["cer"]) == chosen
    assert set(best) >= {"alpha", "beta", "beam_width", "wer", "cer", "greedy_wer", "greedy_cer", "default_wer",
                         "default_cer", "dev_clips"}
    assert best["dev_clips"] == len(clip_paths(release, "dev", 100))
    attrs = read_attrs(repo / "language_model")
    assert (attrs["alpha"], attrs["beta"]) == (best["alpha"], best["beta"])
    assert (repo / "lm_tuning" / "wer_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((repo / "lm_tuning" / "best.json").read_text()) == best
    check_language_model_dir(repo)  # tuning keeps the folder to its three files

    # A second run reads the dev log-probs from the cache instead of running the model.
    tune_language_model(repo, str(release), "hy-AM", "dev", grid=grid, progress=False, log=messages.append)
    assert any(" log-probs from " in m and ".ctcforge-cache" in m for m in messages)


@needs_speech
def test_cpp_and_pyctcdecode_give_the_same_test_split_text_at_the_tuned_and_default_weights(lm_repo, tmp_path):
    """The trained model's own log-probs of its test split, decoded by the repo's
    runtime beam_search with each package at the weights tuning chose and at pyctcdecode's
    defaults: the same text for every clip, or the C++ decoder could not stand in."""
    from repo_script import repo_script_module

    from ctcforge.lm_tuning import cached_dev_set
    from ctcforge.runtime.beam_search import CPP_ENGINE, DEFAULT_BEAM_WIDTH, PYTHON_ENGINE

    repo, release, _, _ = lm_repo
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))
    grid = TuningGrid(alphas=(2.0,), betas=(4.0,), beam_widths=(16,))  # the defaults are added
    best = tune_language_model(repo, str(release), "hy-AM", "dev", grid=grid, progress=False, log=quiet)
    test = cached_dev_set(repo, str(release), "hy-AM", "test", "sentence", repo_normalizer(repo), None, 8, quiet)
    cells = [(best["alpha"], best["beta"], best["beam_width"]), (0.5, 1.5, DEFAULT_BEAM_WIDTH)]
    texts = {}
    for engine in (CPP_ENGINE, PYTHON_ENGINE):
        with repo_script_module(repo, "eval.py") as evaluation:
            beam_search = evaluation.runtime.beam_search
            decoder = beam_search.load_beam_decoder(str(repo), None, None, engine=engine)
            assert decoder.engine == engine
            with beam_search.BeamSearch(decoder, 0, test.log_probs) as search:
                texts[engine] = dict(search.decode_grid(cells))
    assert texts[CPP_ENGINE] == texts[PYTHON_ENGINE]
    # Text that can tell two searches apart: words on most clips, not the greedy text everywhere.
    for cell_texts in texts[CPP_ENGINE].values():
        assert sum(bool(text.strip()) for text in cell_texts) > len(cell_texts) // 2
    normalizer = repo_normalizer(repo)
    assert any(normalizer(text) != greedy for cell_texts in texts[CPP_ENGINE].values()
               for text, greedy in zip(cell_texts, test.greedy))
