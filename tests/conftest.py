"""What several test files share, written once here.

- `needs_speech` (and `SPEECH_TOOLS`): the skip for tests that synthesise speech, which need
  espeak-ng and ffmpeg (./setup.sh installs them). `LOCALE`: hy-AM, the language they use.
- Fixtures, each built once per test file that asks for it: `stamped_repo` (a tiny hy-AM
  repo stamped without a dataset), `script` (its training script imported as a module; a
  test that parametrizes an argument named `script` gets its own value instead) and
  `cv_release` (24 synthesised clips as a Common Voice release).
- Helpers that make data (`synthesised_release`, `ffmpeg`, `save_random_weights`,
  `save_waveform_extractor` and the small wav2vec2 shapes, `build_training_text_lm`,
  `write_training_run`), run a repo's scripts (`run_script`, `succeeded`, `train_briefly`,
  `run_eval`) and read what comes back (`read_tsv`, `read_log`, `drop_table`, `pipeline_texts`).

Test files import the helpers and markers they use (`from conftest import needs_speech`);
fixtures need no import. torch, transformers and ctcforge.new, .synth and .lm are imported
inside the helpers that use them, so that collecting a file that needs none of them stays quick."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from repo_script import SCRIPT, imported_script

LOCALE = "hy-AM"

SPEECH_TOOLS = bool(shutil.which("espeak-ng") and shutil.which("ffmpeg"))
needs_speech = pytest.mark.skipif(not SPEECH_TOOLS, reason="needs espeak-ng and ffmpeg (./setup.sh installs them)")

# Small wav2vec2 shapes: XLS-R/MMS style (layer norm, stable layer norm) and wav2vec2-base
# style (group norm), with strides that leave enough frames for the transcripts.
WAV2VEC2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 4),
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                codevector_dim=16, proj_codevector_dim=16, num_codevectors_per_group=8)
XLSR_STYLE = dict(WAV2VEC2, feat_extract_norm="layer", do_stable_layer_norm=True)
BASE_STYLE = dict(WAV2VEC2, feat_extract_norm="group", do_stable_layer_norm=False)


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stamped_repo(tmp_path_factory):
    """A tiny hy-AM repo stamped without a dataset (so it needs no espeak-ng), once per test file."""
    from ctcforge.new import new_repo

    return new_repo(LOCALE, tmp_path_factory.mktemp("stamped") / "repo", base_model="tiny")


@pytest.fixture(scope="module")
def script(stamped_repo):
    """The stamped repo's training script imported as a module."""
    with imported_script(stamped_repo) as module:
        yield module


@pytest.fixture(scope="module")
def cv_release(tmp_path_factory):
    """24 synthesised hy-AM clips (seed 3) as a Common Voice release folder, cv/hy-AM/, once per test file."""
    return synthesised_release(tmp_path_factory.mktemp("cv") / "cv", 24, seed=3)


# ---------------------------------------------------------------------------------------
# Making files
# ---------------------------------------------------------------------------------------


def synthesised_release(folder, clips, seed):
    """`clips` synthesised hy-AM clips as a Common Voice release in `folder` (folder/hy-AM/); returns `folder`."""
    from ctcforge.synth import synthesize

    synthesize(LOCALE, folder, clips, seed=seed, progress=False)
    return folder


def ffmpeg(*args):
    """ffmpeg run quietly on `args` (made strings), overwriting its output; fails the test if it fails."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=120)


def read_tsv(path):
    """(column names, rows as dicts) of a Common Voice TSV file, read as the loaders read it (no quoting)."""
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)
        return reader.fieldnames, rows


def save_random_weights(repo, seed=0, output_scale=8.0):
    """Random weights; the CTC head is scaled up so frames are peaked, as a trained
    model's are (flat outputs would make beam search slow and greedy text arbitrary)."""
    import torch
    from transformers import AutoConfig, AutoModelForCTC

    torch.manual_seed(seed)
    model = AutoModelForCTC.from_config(AutoConfig.from_pretrained(repo))
    with torch.no_grad():
        model.lm_head.weight.mul_(output_scale)
    model.save_pretrained(repo)


def save_waveform_extractor(folder, attention_mask=True):
    """A raw-waveform wav2vec2 feature extractor (16 kHz, normalised) saved beside a model in `folder`."""
    from transformers import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=attention_mask).save_pretrained(folder)


def build_training_text_lm(repo, release):
    """A 3-gram of the release's hy-AM train split, built into the repo as `ctcforge lm` builds it."""
    from ctcforge.lm import TextSources, build_language_model

    build_language_model(repo, TextSources(dataset=str(release), config=LOCALE, split="train"), order=3,
                         progress=False, log=lambda message: None)


def write_training_run(folder, output_dir):
    """training_run.json as the repo's training script writes it at the end of a run."""
    record = {"command": f"python run_speech_recognition_ctc.py --output_dir {output_dir}",
              "output_dir": str(output_dir), "started_from": "random initialisation", "steps": 5,
              "framework_versions": {"transformers": "5"}, "finished_at": "2025-01-01T00:00:00+00:00"}
    (folder / "training_run.json").write_text(json.dumps(record), encoding="utf-8")


# ---------------------------------------------------------------------------------------
# Running a repo's scripts
# ---------------------------------------------------------------------------------------


def run_script(repo, *args, script=SCRIPT, launcher=(sys.executable,), env=None, timeout=600):
    """One of the repo's scripts (the training script unless told) run in the repo; returns the finished process."""
    return subprocess.run([*launcher, script, *map(str, args)], cwd=repo, capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else {**os.environ, **env})


def succeeded(result):
    """`result`, after asserting that its process exited 0 (the ends of its output are the message)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def train_briefly(repo, release, output_dir, *extra, launcher=(sys.executable,), batch_size=4, max_steps=2):
    """The training script run from ./ on the hy-AM release for `max_steps` CPU steps; returns its output."""
    result = succeeded(run_script(
        repo, "--model_name_or_path", "./", "--dataset_name", release, "--dataset_config_name", LOCALE,
        "--output_dir", output_dir, "--do_train", "--max_steps", max_steps, "--per_device_train_batch_size",
        batch_size, "--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0", "--seed", "1",
        "--disable_tqdm", "true", *extra, launcher=launcher))
    return result.stdout + result.stderr


def run_eval(repo, *args, expect_success=True, model_id="./"):
    """The repo's eval.py run in the repo on `args`; asserts that it succeeded unless told not to."""
    result = run_script(repo, "--model_id", model_id, *args, script="eval.py")
    return succeeded(result) if expect_success else result


# ---------------------------------------------------------------------------------------
# Reading what they leave
# ---------------------------------------------------------------------------------------


def read_log(path):
    """{row: text} from a log file of alternating index and text lines."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) % 2 == 1, "each entry is two lines, each ending in a newline"
    return {int(index): text for index, text in zip(lines[0:-1:2], lines[1:-1:2])}


def drop_table(output):
    """The training column of the training script's drop table, as {row name: count}."""
    start = output.index("Clips dropped, by reason:")
    table = {}
    for line in output[start:].splitlines()[2:]:
        match = re.fullmatch(r"(.+?)\s{2,}(\S+)\s*", line)
        if not match:
            break
        table[match.group(1).strip()] = match.group(2)
        if match.group(1).strip() == "hours kept":
            break
    return table


def pipeline_texts(repo, arrays, **options):
    """The text transformers' pipeline() gives each waveform with the repo's model (and its LM, if it has one)."""
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(repo), device=-1)
    return [asr(array, **options)["text"] for array in arrays]


def card_python(repo):
    """The Python block of the Usage section of the repo's card."""
    card = (repo / "README.md").read_text(encoding="utf-8")
    usage = card[card.index("## Usage"):]
    return re.search(r"```python\n(.*?)```", usage, re.S).group(1)
