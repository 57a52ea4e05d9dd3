"""`ctcforge update`: a repo brought to the current template by a three-way merge, from the
template version it was stamped from (the flat layout of version 1 included)."""

import dataclasses
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml
from conftest import LOCALE, needs_speech, read_log, run_eval, save_random_weights, synthesised_release

from ctcforge.answers import ANSWERS_FILE, Answers, file_digest
from ctcforge.cli import main
from ctcforge.new import new_repo
from ctcforge.runtime.repo_files import RUNTIME_FOLDER
from ctcforge.templates import HISTORY_DIR, TEMPLATE_VERSION, write_template_tree
from ctcforge.update import render_base, stamped_files

# The modules version 1 stamped at a repo's root, which the runtime folder replaced.
FLAT_MODULES = ("atomic.py", "text_normalizer.py", "error_rates.py", "ctc_frames.py", "speech_data.py",
                "starting_weights.py", "transcription.py", "acoustic_engines.py", "beam_search.py",
                "trained_model.py", "training_schedule.py", "checkpoints.py", "clip_preparation.py",
                "features_on_the_fly.py", "training_record.py", "training_vocabulary.py", "cpu_threads.py",
                "adapters.py")


def stamp_as_version_1(repo):
    """Turns a fresh stamp into the repo today's flat layout (template version 1) stamped:
    its template files rendered from the history archive, the runtime folder gone, and the
    answers as version 1 wrote them (no template_version, a sha256 of every stamped file)."""
    answers = Answers.load(repo)
    shutil.rmtree(repo / RUNTIME_FOLDER)
    old = dataclasses.replace(answers, template_version=1)
    render_base(old, repo)
    record = dataclasses.asdict(old)
    del record["template_version"]
    record["files"] = {name: file_digest(repo / name) for name in stamped_files(repo)}
    (repo / ANSWERS_FILE).write_text(yaml.safe_dump(record, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return repo


def top_level_python(repo):
    return sorted(path.name for path in repo.glob("*.py"))


def test_the_current_versions_archive_is_the_current_template(tmp_path):
    """An update renders a repo's old stamp from its version's archive: if the template
    changed without a new version and archive, every repo stamped since would merge from a
    wrong base. Bump TEMPLATE_VERSION and run `python -m ctcforge.update --archive`."""
    write_template_tree(tmp_path / "current", None)
    with tarfile.open(HISTORY_DIR / f"{TEMPLATE_VERSION}.tar.gz") as tar:
        tar.extractall(tmp_path / "archived", filter="data")
    current = {p.relative_to(tmp_path / "current").as_posix(): p.read_bytes()
               for p in (tmp_path / "current").rglob("*") if p.is_file()}
    archived = {p.relative_to(tmp_path / "archived").as_posix(): p.read_bytes()
                for p in (tmp_path / "archived").rglob("*") if p.is_file()}
    assert sorted(current) == sorted(archived)
    changed = [name for name in current if current[name] != archived[name]]
    assert not changed, f"changed since version {TEMPLATE_VERSION} was archived: {changed}"


def test_a_flat_repo_updates_in_place_to_the_runtime_folder(tmp_path, capsys):
    repo = stamp_as_version_1(new_repo(LOCALE, tmp_path / "r", base_model="tiny"))
    assert len(top_level_python(repo)) == 20
    (repo / "cpu_threads.py").write_text("# my own thread rules\n", encoding="utf-8")  # edited: stays
    assert main(["update", str(repo)]) == 0
    out = capsys.readouterr().out
    assert top_level_python(repo) == ["cpu_threads.py", "eval.py", "run_speech_recognition_ctc.py"]
    assert (repo / "cpu_threads.py").read_text(encoding="utf-8") == "# my own thread rules\n"
    assert (repo / RUNTIME_FOLDER / "cpu_threads.py").is_file()
    removed = next(line for line in out.splitlines() if line.startswith("removed"))
    assert removed.startswith(f"removed {len(FLAT_MODULES) - 1} ")
    assert "cpu_threads.py" in next(line for line in out.splitlines() if line.startswith("left"))
    assert Answers.load(repo).template_version == TEMPLATE_VERSION
    # The repo's own tests pass in the new layout.
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=repo,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]


def test_an_edit_to_eval_py_survives_an_update_that_changes_another_region(tmp_path, capsys):
    repo = stamp_as_version_1(new_repo(LOCALE, tmp_path / "r", base_model="tiny"))
    script = repo / "eval.py"
    old = script.read_text(encoding="utf-8")
    # A change of the user's own, far from the imports the new template rewrote.
    edited = old.replace('"--batch_size", type=int, default=8,', '"--batch_size", type=int, default=48,')
    assert edited != old
    script.write_text(edited, encoding="utf-8")
    assert main(["update", str(repo)]) == 0
    merged = script.read_text(encoding="utf-8")
    assert '"--batch_size", type=int, default=48,' in merged
    assert f"from {RUNTIME_FOLDER}.error_rates import error_rates" in merged
    assert "<<<<<<<" not in merged and not (repo / "eval.py.new").exists()
    assert "merged 1 " in capsys.readouterr().out
    # The merged script runs.
    result = subprocess.run([sys.executable, "eval.py", "--help"], cwd=repo, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "--batch_size" in result.stdout, result.stderr[-2000:]


def test_both_changing_one_region_leaves_conflict_markers_and_says_so(tmp_path, capsys):
    repo = stamp_as_version_1(new_repo(LOCALE, tmp_path / "r", base_model="tiny"))
    script = repo / "eval.py"
    old = script.read_text(encoding="utf-8")
    script.write_text(old.replace("from error_rates import error_rates", "from my_metrics import error_rates"),
                      encoding="utf-8")
    assert main(["update", str(repo)]) == 0
    merged = script.read_text(encoding="utf-8")
    assert re.search(r"<<<<<<< yours\n(.*\n)*from my_metrics import error_rates\n(.*\n)*=======\n(.*\n)*"
                     rf"from {RUNTIME_FOLDER}\.error_rates import error_rates\n(.*\n)*>>>>>>> template", merged)
    assert "CONFLICTS in 1 " in capsys.readouterr().out


def test_an_update_with_nothing_new_changes_nothing(tmp_path, capsys):
    repo = new_repo(LOCALE, tmp_path / "r", base_model="tiny")
    (repo / "eval.py").write_text((repo / "eval.py").read_text(encoding="utf-8") + "# mine\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and p.name != ANSWERS_FILE}
    assert main(["update", str(repo)]) == 0
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and p.name != ANSWERS_FILE} == before
    assert capsys.readouterr().out.splitlines()[0].startswith("unchanged")


def test_update_refuses_a_folder_ctcforge_did_not_make(tmp_path, capsys):
    (tmp_path / "eval.py").write_text("print()\n", encoding="utf-8")
    assert main(["update", str(tmp_path)]) == 2
    assert f"has no {ANSWERS_FILE}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return synthesised_release(tmp_path_factory.mktemp("release") / "cv", 12, seed=3)


@needs_speech
def test_a_trained_flat_repo_evaluates_to_the_same_figures_after_the_update(tmp_path, release):
    repo = stamp_as_version_1(new_repo(LOCALE, tmp_path / "r", base_model="tiny", dataset=str(release)))
    save_random_weights(repo)
    arguments = ("--dataset", release, "--config", LOCALE, "--split", "test", "--decoder", "greedy",
                 "--log_outputs", "--batch_size", "4")
    name = f"{release.name}_{LOCALE}_test"

    def figures():
        run_eval(repo, *arguments)
        return [(repo / f"{prefix}{name}{suffix}").read_text(encoding="utf-8")
                for prefix, suffix in (("", "_eval_results.txt"), ("log_", "_predictions.txt"))]

    before = figures()
    predictions = read_log(repo / f"log_{name}_predictions.txt").values()
    assert sum(bool(text.strip()) for text in predictions) > len(predictions) // 2, "figures worth comparing"
    weights = (repo / "model.safetensors").read_bytes()
    assert main(["update", str(repo)]) == 0
    assert top_level_python(repo) == ["eval.py", "run_speech_recognition_ctc.py"]
    assert (repo / "model.safetensors").read_bytes() == weights
    assert figures() == before
