"""The repo training script on awkward input and other set-ups: bad clips and transcripts in
a release are dropped, counted and reported rather than ending the run; a raw-waveform
wav2vec2 base and the log-mel `tiny` base both train and load back through the Auto
classes; and `accelerate launch` runs the script as it is."""

import json
import random
import shutil
import sys

import numpy as np
import pytest
from conftest import LOCALE, drop_table, ffmpeg, needs_speech, read_tsv, save_waveform_extractor, train_briefly
from repo_script import imported_script
from transformers import (AutoConfig, AutoFeatureExtractor, AutoModelForCTC, Wav2Vec2Config, Wav2Vec2CTCTokenizer,
                          Wav2Vec2Model)

from ctcforge.new import new_repo

pytestmark = needs_speech

OOV_SENTENCE = "hello world"
OOV_LETTERS = "dehlorw"


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirty_release(cv_release, tmp_path_factory):
    """The clean release with six bad or awkward rows appended to its train.tsv."""
    release = tmp_path_factory.mktemp("dirty") / "cv"
    shutil.copytree(cv_release, release)
    folder = release / LOCALE
    columns, rows = read_tsv(folder / "train.tsv")
    clips = folder / "clips"
    source = clips / rows[0]["path"]

    (clips / "zero_bytes.mp3").write_bytes(b"")
    (clips / "corrupt.mp3").write_bytes(random.Random(7).randbytes(4096))
    ffmpeg("-i", source, "-ar", 44100, "-ac", 2, clips / "stereo_44k.mp3")
    ffmpeg("-i", source, "-af", "apad=whole_dur=60", clips / "sixty_seconds.mp3")
    shutil.copy(source, clips / "empty_transcript.mp3")
    shutil.copy(source, clips / "out_of_vocabulary.mp3")

    sentence = rows[0]["sentence"]
    added = [("zero_bytes.mp3", sentence), ("corrupt.mp3", sentence), ("stereo_44k.mp3", sentence),
             ("sixty_seconds.mp3", sentence), ("empty_transcript.mp3", ""),
             ("out_of_vocabulary.mp3", OOV_SENTENCE)]
    with open(folder / "train.tsv", "a", encoding="utf-8", newline="") as tsv:
        for path, text in added:
            row = {**rows[0], "path": path, "sentence": text}
            tsv.write("\t".join(row[column] or "" for column in columns) + "\n")
    assert len(read_tsv(folder / "train.tsv")[1]) == len(rows) + len(added)
    return release, len(rows)


@pytest.fixture(scope="module")
def dirty_run(dirty_release, tmp_path_factory):
    release, clean_rows = dirty_release
    work = tmp_path_factory.mktemp("dirty-run")
    repo = new_repo(LOCALE, work / "repo", base_model="tiny")
    output = train_briefly(repo, release, repo / "out", "--max_duration_in_seconds", "20")
    return repo, output, clean_rows


@pytest.fixture(scope="module")
def wav2vec2_base(tmp_path_factory):
    """A local raw-waveform wav2vec2 checkpoint (random weights) small enough for a CPU."""
    folder = tmp_path_factory.mktemp("w2v2-base")
    config = Wav2Vec2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                            conv_dim=(64, 64), conv_kernel=(10, 3), conv_stride=(5, 2), feat_extract_norm="layer",
                            do_stable_layer_norm=True, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4)
    Wav2Vec2Model(config).save_pretrained(folder)
    save_waveform_extractor(folder)
    return folder


# ---------------------------------------------------------------------------------------
# Bad input is dropped and counted
# ---------------------------------------------------------------------------------------


def test_bad_clips_are_counted_by_reason(dirty_run):
    _, output, _ = dirty_run
    table = drop_table(output)
    assert table["unreadable audio"] == "2", table
    assert table["longer than max_duration_in_seconds"] == "1", table
    assert table["transcript empty after normalisation"] == "1", table
    for reason in ("empty audio file", "shorter than min_duration_in_seconds",
                   "feature extraction failed", "more labels than output frames"):
        assert table[reason] == "0", table
    assert "Dropping unreadable clip" in output and "zero_bytes.mp3" in output and "corrupt.mp3" in output


def test_a_clip_the_release_lists_as_too_long_is_dropped_unread(dirty_release, tmp_path):
    """clip_durations.tsv decides before decoding: the damaged clip listed at 60 s counts as
    too long, and its file is never opened (no "unreadable" warning names it)."""
    release, _ = dirty_release
    listed = tmp_path / "cv"
    shutil.copytree(release, listed)
    (listed / LOCALE / "clip_durations.tsv").write_text("clip\tduration[ms]\ncorrupt.mp3\t60000\n",
                                                        encoding="utf-8")
    repo = new_repo(LOCALE, tmp_path / "repo", base_model="tiny")
    output = train_briefly(repo, listed, repo / "out", "--max_duration_in_seconds", "20", max_steps=1)
    table = drop_table(output)
    assert table["longer than max_duration_in_seconds"] == "2", table  # sixty_seconds.mp3 decoded, corrupt listed
    assert table["unreadable audio"] == "1", table  # zero_bytes.mp3 alone
    assert "corrupt.mp3" not in output


def test_stereo_and_out_of_vocabulary_clips_are_kept(dirty_run):
    repo, output, clean_rows = dirty_run
    table = drop_table(output)
    # Every clean clip, the 44.1 kHz stereo one (downmixed and resampled) and the Latin one.
    assert table["kept"] == str(clean_rows + 2), table
    train_results = json.loads((repo / "out" / "train_results.json").read_text(encoding="utf-8"))
    assert train_results["train_samples"] == clean_rows + 2


def test_out_of_vocabulary_letters_are_warned_about_and_learnt(dirty_run):
    """The profile's vocabulary lacks the Latin letters, so the script says so and builds
    its vocabulary from the training text, which then holds them."""
    repo, output, _ = dirty_run
    stamped = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    assert not set(OOV_LETTERS) & set(stamped)
    assert f"lacks {' '.join(OOV_LETTERS)}" in output
    assert "building the vocabulary from the training text instead" in output
    trained = json.loads((repo / "out" / "vocab.json").read_text(encoding="utf-8"))
    assert set(OOV_LETTERS) <= set(trained)
    model = AutoModelForCTC.from_pretrained(repo / "out")
    assert model.config.vocab_size == len(trained)


def test_stereo_44k_clip_is_downmixed_and_resampled(dirty_run, dirty_release):
    """The kept stereo clip is read as the model expects it: one channel at the feature
    extractor's rate, as long in seconds as the mono 48 kHz clip it was made from."""
    repo, _, _ = dirty_run
    release, _ = dirty_release
    clips = release / LOCALE / "clips"
    _, rows = read_tsv(release / LOCALE / "train.tsv")
    with imported_script(repo) as script:
        feature_extractor = AutoFeatureExtractor.from_pretrained(repo)
        preparer = script.clip_preparation.ClipPreparer(
            feature_extractor, Wav2Vec2CTCTokenizer.from_pretrained(repo / "out"),
            feature_extractor.model_input_names[0], "input_length", "audio",
            script.DataTrainingArguments(dataset_name=str(release), max_duration_in_seconds=20.0))
        stereo = preparer.read_waveform({"path": str(clips / "stereo_44k.mp3"), "bytes": None})
        source = preparer.read_waveform({"path": str(clips / rows[0]["path"]), "bytes": None})
        prepared = preparer({"audio": {"path": str(clips / "stereo_44k.mp3"), "bytes": None},
                             "target_text": "աբ"})
    assert stereo.ndim == 1 and source.ndim == 1
    # mp3 encoding pads a few ms; a missed downmix would double the length, a missed
    # resample would scale it by 44.1/16.
    assert abs(len(stereo) - len(source)) < 0.05 * feature_extractor.sampling_rate
    assert np.isfinite(stereo).all() and np.abs(stereo).max() > 0.01
    assert prepared["drop_reason"] == ""
    assert prepared["duration"] == pytest.approx(len(source) / feature_extractor.sampling_rate, abs=0.05)


# ---------------------------------------------------------------------------------------
# Both model families through the Auto classes
# ---------------------------------------------------------------------------------------


def test_raw_waveform_wav2vec2_base_trains_and_loads(cv_release, wav2vec2_base, tmp_path):
    repo = new_repo(LOCALE, tmp_path / "repo", base_model=str(wav2vec2_base))
    assert json.loads((repo / "config.json").read_text())["model_type"] == "wav2vec2"
    output = train_briefly(repo, cv_release, repo / "out", "--max_duration_in_seconds", "8",
                           "--logging_steps", "1", batch_size=2, max_steps=4)
    assert "Clips dropped, by reason:" in output
    model = AutoModelForCTC.from_pretrained(repo / "out")
    assert type(model).__name__ == "Wav2Vec2ForCTC"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    state = json.loads((repo / "out" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 4
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses and all(loss == loss and loss < float("inf") for loss in losses)


def test_tiny_log_mel_base_loads_as_wav2vec2_bert(dirty_run):
    repo, _, _ = dirty_run
    # The stamped repo holds no weights: its config picks the class.
    assert type(AutoModelForCTC.from_config(AutoConfig.from_pretrained(repo))).__name__ == "Wav2Vec2BertForCTC"
    assert type(AutoModelForCTC.from_pretrained(repo / "out")).__name__ == "Wav2Vec2BertForCTC"


# ---------------------------------------------------------------------------------------
# accelerate launch
# ---------------------------------------------------------------------------------------


def test_accelerate_launch_runs_the_script_unchanged(cv_release, tmp_path):
    repo = new_repo(LOCALE, tmp_path / "repo", base_model="tiny")
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu")
    train_briefly(repo, cv_release, repo / "out", launcher=launcher)
    model = AutoModelForCTC.from_pretrained(repo / "out")
    assert type(model).__name__ == "Wav2Vec2BertForCTC"
    state = json.loads((repo / "out" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 2
