"""`ctcforge new`: the stamped repo's layout, its answers record, and the user errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoConfig, AutoModelForCTC

from ctcforge.cli import main
from ctcforge.new import new_repo
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.text_normalizer import load as load_normalizer
from ctcforge.templates import render_templates

EXPECTED_FILES = ["run_speech_recognition_ctc.py", "eval.py", "vocab.json", "config.json",
                  "preprocessor_config.json", "tokenizer_config.json", "README.md", "requirements.txt",
                  "requirements-nodeps.txt", ".gitattributes", ".gitignore", "ctcforge_runtime/text_normalizer.py",
                  "ctcforge_runtime/speech_data.py", "language_profile.json", ".ctcforge-answers.yml",
                  "tests/test_identity.py", "tests/test_text_normalizer.py"]


# `stamped_repo`, the tiny hy-AM repo these tests read, is conftest's.


def test_repo_has_every_file(stamped_repo):
    missing = [name for name in EXPECTED_FILES if not (stamped_repo / name).is_file()]
    assert not missing
    assert (stamped_repo / "language_model").is_dir() and not any((stamped_repo / "language_model").iterdir())
    assert not list(stamped_repo.rglob("*.jinja"))


def test_top_level_holds_the_two_scripts_and_one_runtime_package(stamped_repo):
    assert sorted(p.name for p in stamped_repo.glob("*.py")) == ["eval.py", "run_speech_recognition_ctc.py"]
    folders = sorted(p.name for p in stamped_repo.iterdir() if p.is_dir())
    assert folders == ["ctcforge_runtime", "language_model", "tests"]
    runtime = Path(__file__).parents[1] / "ctcforge" / "runtime"
    assert sorted(p.name for p in (stamped_repo / "ctcforge_runtime").iterdir()) == sorted(
        p.name for p in runtime.glob("*.py"))


def test_gitattributes_and_gitignore_carry_the_hub_rules(stamped_repo):
    attributes = (stamped_repo / ".gitattributes").read_text()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in attributes
    ignored = (stamped_repo / ".gitignore").read_text().splitlines()
    assert "checkpoint-*/" in ignored and ".env" in ignored


def test_vocab_is_the_profile_alphabet_with_ctc_specials(stamped_repo):
    vocab = json.loads((stamped_repo / "vocab.json").read_text(encoding="utf-8"))
    assert {"|", "[UNK]", "[PAD]", "ա", "և", "ֆ"} <= set(vocab)
    assert sorted(vocab.values()) == list(range(len(vocab)))
    config = AutoConfig.from_pretrained(stamped_repo)
    assert config.vocab_size == len(vocab) and config.pad_token_id == vocab["[PAD]"]
    assert config.model_type == "wav2vec2-bert" and config.ctc_zero_infinity


def test_repo_normaliser_is_the_package_normaliser(stamped_repo):
    repo_code = (stamped_repo / "ctcforge_runtime" / "text_normalizer.py").read_text(encoding="utf-8")
    package_code = (Path(__file__).parents[1] / "ctcforge" / "runtime" / "text_normalizer.py").read_text(
        encoding="utf-8")
    assert repo_code == package_code
    normalize = load_normalizer(stamped_repo / "language_profile.json")
    assert normalize("Բարև, ԱՇԽԱՐՀ։") == "բարև աշխարհ"


def test_answers_record_regenerates_the_same_repo(stamped_repo, tmp_path):
    answers = yaml.safe_load((stamped_repo / ".ctcforge-answers.yml").read_text(encoding="utf-8"))
    assert answers["language"] == "hy-AM" and answers["base_model"] == "tiny"
    again = new_repo(answers["language"], tmp_path / "again", base_model=answers["base_model"])
    for name in ["vocab.json", "config.json", "README.md", "language_profile.json", "eval.py"]:
        assert (again / name).read_bytes() == (stamped_repo / name).read_bytes(), name


@pytest.mark.parametrize("model, model_type, hidden", [
    ("facebook/wav2vec2-xls-r-300m", "wav2vec2", 1024),
    ("facebook/wav2vec2-xls-r-1b", "wav2vec2", 1280),
    ("facebook/mms-1b", "wav2vec2", 1280),
    ("facebook/mms-1b-all", "wav2vec2", 1280),
    ("facebook/w2v-bert-2.0", "wav2vec2-bert", 1024),
])
def test_catalogue_models_write_their_architecture_offline(tmp_path, model, model_type, hidden):
    repo = new_repo("as", tmp_path / "r", base_model=model)
    config = AutoConfig.from_pretrained(repo)
    assert (config.model_type, config.hidden_size) == (model_type, hidden)


def test_local_model_folder_as_base(stamped_repo, tmp_path):
    base = tmp_path / "trained-hy"
    shutil.copytree(stamped_repo, base)
    AutoModelForCTC.from_config(AutoConfig.from_pretrained(base)).save_pretrained(base)
    repo = new_repo("tr", tmp_path / "tr", base_model=str(base))
    source, stamped = AutoConfig.from_pretrained(base), AutoConfig.from_pretrained(repo)
    assert stamped.hidden_size == source.hidden_size and stamped.vocab_size != source.vocab_size


def test_unknown_language_names_the_closest_profiles(tmp_path, capsys):
    assert main(["new", "hy", "--output-dir", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "hy-AM" in error and "unknown language 'hy'" in error


def test_unknown_base_model_is_one_line_error(tmp_path, capsys):
    assert main(["new", "hy-AM", "--output-dir", str(tmp_path / "x"), "--base-model", "nope/none"]) == 2
    assert "unknown base model 'nope/none'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_non_empty_output_dir_needs_force(stamped_repo, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(CtcforgeError, match="--force"):
        new_repo("hy-AM", target, base_model="tiny")
    new_repo("hy-AM", target, base_model="tiny", force=True)
    assert (target / "notes.txt").read_text() == "mine" and (target / "eval.py").is_file()


def test_failed_stamp_leaves_nothing_behind(tmp_path, monkeypatch):
    import ctcforge.new as new_module

    def broken(*args, **kwargs):
        raise CtcforgeError("boom")

    monkeypatch.setattr(new_module, "write_card", broken)
    with pytest.raises(CtcforgeError, match="boom"):
        new_repo("hy-AM", tmp_path / "half", base_model="tiny")
    assert list(tmp_path.iterdir()) == []


def test_templates_render_strictly(tmp_path):
    source = tmp_path / "tpl"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "x.txt.jinja").write_text("{{ answers.language }}-{{ missing }}")
    with pytest.raises(CtcforgeError, match="missing"):
        render_templates(source, tmp_path / "out", {"answers": {"language": "hy-AM"}})
    (source / "sub" / "x.txt.jinja").write_text("{{ answers.language }} {{ '{{' }}")
    (source / "plain.py").write_text("print('{{ untouched }}')")
    render_templates(source, tmp_path / "out", {"answers": {"language": "hy-AM"}})
    assert (tmp_path / "out" / "sub" / "x.txt").read_text() == "hy-AM {{"
    assert (tmp_path / "out" / "plain.py").read_text() == "print('{{ untouched }}')"


def test_help_documents_every_command():
    parser_help = subprocess.run([sys.executable, "-m", "ctcforge", "--help"], capture_output=True,
                                 text=True, check=True).stdout
    for command in ("new", "card", "synth", "languages", "models"):
        assert command in parser_help
        sub = subprocess.run([sys.executable, "-m", "ctcforge", command, "--help"],
                             capture_output=True, text=True, check=True).stdout
        assert "usage: ctcforge " + command in sub
    new_help = subprocess.run([sys.executable, "-m", "ctcforge", "new", "--help"],
                              capture_output=True, text=True, check=True).stdout
    for option in ("--output-dir", "--base-model", "--dataset", "--spec", "--force"):
        assert option in new_help


def test_generated_repo_tests_pass(stamped_repo):
    """The stamped repo's own tests/ pass with `python -m pytest` inside it."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=stamped_repo, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_base_model_option_overrides_the_spec_on_the_card(tmp_path):
    spec = Path(__file__).parents[1] / "specs" / "hy-AM.yaml"
    repo = new_repo(None, tmp_path / "r", spec_path=spec, base_model="tiny")
    card = (repo / "README.md").read_text(encoding="utf-8")
    assert AutoConfig.from_pretrained(repo).model_type == "wav2vec2-bert"
    assert "base_model:" not in card.split("---")[1]  # tiny is no Hub model
    answers = yaml.safe_load((repo / ".ctcforge-answers.yml").read_text(encoding="utf-8"))
    assert answers["base_model"] == "tiny" and answers["spec"]["base_model"] == "facebook/wav2vec2-xls-r-1b"


# ---------------------------------------------------------------------------- new --force over a repo

def record(repo):
    return yaml.safe_load((repo / ".ctcforge-answers.yml").read_text(encoding="utf-8"))


def pretend_stamped(repo, name, text):
    """Makes `name` look as an older ctcforge stamped it: its content and recorded sha256."""
    import hashlib

    (repo / name).write_text(text, encoding="utf-8")
    answers = record(repo)
    answers["files"][name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    (repo / ".ctcforge-answers.yml").write_text(yaml.safe_dump(answers, allow_unicode=True), encoding="utf-8")


def train(repo, vocab_size=None):
    """Weights as a training run leaves them: model.safetensors, and a config.json the
    Trainer rewrote (so its bytes are no longer the stamped ones)."""
    config = AutoConfig.from_pretrained(repo)
    if vocab_size is not None:
        config.vocab_size = vocab_size
    elsewhere = repo.parent / f"{repo.name}-weights"
    AutoModelForCTC.from_config(config).save_pretrained(elsewhere)
    shutil.copyfile(elsewhere / "model.safetensors", repo / "model.safetensors")
    if vocab_size is None:
        shutil.copyfile(elsewhere / "config.json", repo / "config.json")


def test_answers_record_the_version_and_a_sha256_of_each_stamped_file(stamped_repo):
    import hashlib

    from ctcforge import __version__

    answers = record(stamped_repo)
    assert answers["ctcforge_version"] == __version__
    files = answers["files"]
    for name in ["eval.py", "vocab.json", "config.json", "tests/test_model_files.py", "language_profile.json"]:
        assert files[name] == hashlib.sha256((stamped_repo / name).read_bytes()).hexdigest(), name
    # The card and the record merge by their own rules, not by hash.
    assert "README.md" not in files and ".ctcforge-answers.yml" not in files


def test_force_takes_the_recorded_answers_for_what_the_command_leaves_out(tmp_path, capsys):
    spec = Path(__file__).parents[1] / "specs" / "hy-AM.yaml"
    repo = new_repo(None, tmp_path / "r", spec_path=spec, base_model="tiny")
    before = record(repo)
    assert main(["new", "--output-dir", str(repo), "--force"]) == 0
    after = record(repo)
    for key in ("language", "base_model", "model_name", "dataset", "dataset_config", "spec"):
        assert after[key] == before[key], key
    assert after["base_model"] == "tiny" and AutoConfig.from_pretrained(repo).model_type == "wav2vec2-bert"
    assert "unchanged" in capsys.readouterr().out


def test_force_updates_untouched_files_and_keeps_edited_ones(tmp_path, capsys):
    """`new --force` over a repo is `ctcforge update` (merging is tested in test_update.py)."""
    repo = new_repo("hy-AM", tmp_path / "r", base_model="tiny")
    stamped_requirements = (repo / "requirements.txt").read_text(encoding="utf-8")
    pretend_stamped(repo, "requirements.txt", "torch==0.1\n")  # an older stamp nobody edited
    (repo / "eval.py").write_text("print('my own eval.py')\n", encoding="utf-8")  # a person's edit
    assert main(["new", "hy-AM", "--output-dir", str(repo), "--base-model", "tiny", "--force"]) == 0
    out = capsys.readouterr().out
    assert (repo / "requirements.txt").read_text(encoding="utf-8") == stamped_requirements
    assert (repo / "eval.py").read_text(encoding="utf-8") == "print('my own eval.py')\n"
    assert not (repo / "requirements.txt.new").exists() and not (repo / "eval.py.new").exists()
    line = {word: next(line for line in out.splitlines() if line.startswith(word)) for word in ("updated", "unchanged")}
    assert line["updated"] == "updated 1: requirements.txt"
    assert int(line["unchanged"].split()[1]) > 10


def test_force_over_trained_weights_keeps_the_labels_and_architecture(tmp_path, capsys):
    repo = new_repo("hy-AM", tmp_path / "r", base_model="tiny")
    train(repo)
    # Even a vocab.json the record says nobody edited stays: the weights were trained on it.
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    pretend_stamped(repo, "vocab.json", json.dumps(vocab, indent=2) + "\n")
    before = {name: (repo / name).read_bytes() for name in ("vocab.json", "config.json", "tokenizer_config.json")}
    assert main(["new", "--output-dir", str(repo), "--force"]) == 0
    out = capsys.readouterr().out
    assert {name: (repo / name).read_bytes() for name in before} == before
    assert not (repo / "config.json.new").exists() and not (repo / "vocab.json.new").exists()
    kept = next(line for line in out.splitlines() if "trained weights" in line)
    assert "config.json" in kept and "vocab.json" in kept


@pytest.mark.parametrize("argv", [["--base-model", "facebook/wav2vec2-xls-r-300m"], ["as"]])
def test_force_refuses_answers_that_would_reshape_trained_weights(tmp_path, capsys, argv):
    repo = new_repo("hy-AM", tmp_path / "r", base_model="tiny")
    train(repo)
    before = {path.name: path.read_bytes() for path in repo.iterdir() if path.is_file()}
    capsys.readouterr()  # what saving the weights printed
    assert main(["new", *argv, "--output-dir", str(repo), "--force"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "trained weights" in error and "--output-dir" in error
    assert {path.name: path.read_bytes() for path in repo.iterdir() if path.is_file()} == before


def test_repo_tests_catch_weights_that_do_not_fit_config(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "r", base_model="tiny")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_model_files.py"]
    train(repo)
    fits = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)
    assert fits.returncode == 0 and "skipped" not in fits.stdout, fits.stdout[-3000:]
    train(repo, vocab_size=len(json.loads((repo / "vocab.json").read_text(encoding="utf-8"))) + 3)
    misfit = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)
    assert misfit.returncode == 1 and "test_trained_weights_fit_config_and_vocab" in misfit.stdout, (
        misfit.stdout[-3000:])


def test_repo_identity_tests_check_the_profile_against_the_record_and_vocab(tmp_path):
    """A language_profile.json from another language's repo fails the stamped repo's own tests."""
    repo = new_repo("hy-AM", tmp_path / "hy", base_model="tiny")
    other = new_repo("as", tmp_path / "as", base_model="tiny")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_identity.py"]
    assert subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900).returncode == 0
    shutil.copyfile(other / "language_profile.json", repo / "language_profile.json")
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout[-3000:]
    for test in ("test_profile_is_the_recorded_language", "test_vocabulary_is_the_profile_alphabet"):
        assert f"FAILED tests/test_identity.py::{test}" in result.stdout, result.stdout[-3000:]
