"""A stamped repo's own scripts, end to end on synthesised speech: its training script and
eval.py share the repo normaliser, and `ctcforge card` turns what they leave into the card."""

import csv
import json
import re
import shutil
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard

from ctcforge.card import rebuild_card
from ctcforge.profiles import load_profile
from ctcforge.render import new_repo
from ctcforge.synth import synthesize

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("ffmpeg")),
                                reason="needs espeak-ng and ffmpeg (./setup.sh installs them)")


def run(script, *args, cwd):
    result = subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def sentences(release, split):
    with open(release / f"{split}.tsv", encoding="utf-8", newline="") as tsv:
        return [row["sentence"] for row in csv.DictReader(tsv, delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="module")
def trained_repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    release = synthesize("hy-AM", work / "cv", 40, seed=1, progress=False)
    repo = new_repo("hy-AM", work / "repo", base_model="tiny", dataset=str(work / "cv"))
    run("run_speech_recognition_ctc.py", "--model_name_or_path", "./", "--dataset_name", str(work / "cv"),
        "--dataset_config_name", "hy-AM", "--train_split_name", "train", "--eval_split_name", "dev",
        "--output_dir", "./", "--max_steps", "8", "--per_device_train_batch_size", "8",
        "--learning_rate", "2e-3", "--do_train", "--do_eval", "--use_cpu", "--report_to", "none",
        "--eval_strategy", "steps", "--eval_steps", "4", "--logging_steps", "2", "--save_steps", "4",
        cwd=repo)
    run("eval.py", "--model_id", "./", "--dataset", str(work / "cv"), "--config", "hy-AM",
        "--split", "test", "--log_outputs", "--decoder", "greedy", "--output_dir", "eval/greedy", cwd=repo)
    return repo, release


def test_vocabulary_comes_from_the_normalised_training_text(trained_repo):
    repo, release = trained_repo
    normalize = load_profile("hy-AM").normalizer()
    train_letters = set("".join(normalize(s) for s in sentences(release, "train"))) - {" "}
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    assert set(vocab) - {"|", "[UNK]", "[PAD]"} == train_letters


def test_eval_writes_the_contract_files(trained_repo):
    repo, release = trained_repo
    folder = repo / "eval" / "greedy"
    results = (folder / "cv_hy-AM_test_eval_results.txt").read_text(encoding="utf-8")
    assert re.fullmatch(r"WER: [0-9.e-]+\nCER: [0-9.e-]+", results)
    targets = (folder / "log_cv_hy-AM_test_targets.txt").read_text(encoding="utf-8").splitlines()
    assert targets[0::2] == [str(i) for i in range(len(targets) // 2)]
    # Targets in the log are the repo normaliser's output, the same text training learnt from.
    normalize = load_profile("hy-AM").normalizer()
    assert sorted(targets[1::2]) == sorted(normalize(s) for s in sentences(release, "test"))


def test_card_is_rebuilt_from_eval_results_and_trainer_state(trained_repo):
    repo, _ = trained_repo
    rebuild_card(repo)
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    measured = (repo / "eval" / "greedy" / "cv_hy-AM_test_eval_results.txt").read_text().splitlines()
    wer = float(measured[0].split(":")[1])
    names = {(r.metric_name, r.dataset_name): r.metric_value for r in card.data.eval_results}
    assert names[("Test WER", "cv hy-AM (test)")] == wer
    assert "### Training results" in card.text and "| 8 |" in card.text
    assert "- training_steps: 8" in card.text and "- learning_rate: 0.002" in card.text
