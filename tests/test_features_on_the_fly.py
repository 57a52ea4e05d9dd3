"""Features on the fly (`--features_on_the_fly`): a split prepared as a manifest gives the
DataLoader the very batches the split prepared up front gives, holds next to nothing, sorts by
its listed durations, counts the clips that fail when their batch is made (and trains on);
`auto` chooses by the estimated size of the prepared features."""

import json
import random
import shutil
import sys

import datasets
import numpy as np
import pytest
import soundfile
import torch
from conftest import LOCALE, drop_table, needs_speech, synthesised_release, train_briefly
from repo_script import SCRIPT
from transformers import (AutoConfig, AutoFeatureExtractor, AutoModelForCTC, SeamlessM4TFeatureExtractor,
                          Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, set_seed)

from ctcforge.new import new_repo

# `stamped_repo` and `script` (its training script imported) are conftest's fixtures.


def list_durations(folder, durations_ms):
    lines = [f"{name}\t{ms}" for name, ms in durations_ms.items()]
    (folder / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + "\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def release(script, tmp_path_factory):
    """12 synthesised clips and a clip_durations.tsv listing each at its decoded length."""
    release = synthesised_release(tmp_path_factory.mktemp("listed") / "cv", 12, seed=5)
    clips = release / LOCALE / "clips"
    list_durations(release / LOCALE, {
        path.name: round(1000 * len(script.speech_data.decode_audio({"path": str(path), "bytes": None}, 16000).samples)
                         / 16000)
        for path in sorted(clips.iterdir())})
    return release


def parsed(script, monkeypatch, release, tmp_path, *extra):
    monkeypatch.setattr(sys, "argv", [SCRIPT, "--model_name_or_path", "./", "--dataset_name", str(release),
                                      "--dataset_config_name", LOCALE, "--output_dir", str(tmp_path), "--use_cpu",
                                      "--report_to", "none", "--per_device_train_batch_size", "4", *extra])
    _, data_args, training_args = script.parse_arguments()
    return data_args, script.resolve_training_arguments(data_args, training_args)


def prepare(script, repo, data_args, training_args, on_the_fly):
    """The training split as main() prepares it, up front or as a manifest."""
    feature_extractor = script.clip_preparation.fast_feature_extractor(AutoFeatureExtractor.from_pretrained(repo))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(repo)
    input_name = feature_extractor.model_input_names[0]
    raw = script.load_split(data_args, "train", feature_extractor.sampling_rate, None)
    raw = script.add_normalised_text(raw, data_args, script.load_normalizer(None), training_args)
    model = AutoModelForCTC.from_config(AutoConfig.from_pretrained(repo))
    preparer = script.clip_preparation.ClipPreparer(feature_extractor, tokenizer, input_name,
                                                    training_args.length_column_name, "audio", data_args,
                                                    on_the_fly=on_the_fly)
    split, _ = script.clip_preparation.prepare_split(raw, "train", preparer, model, data_args, training_args)
    collator = script.clip_preparation.DataCollatorCTCWithPadding(feature_extractor, tokenizer, input_name,
                                                                  clip_reader=preparer)
    return split, collator, model


def batches(script, model, training_args, split, collator):
    trainer = script.CTCTrainer(model=model, args=training_args, train_dataset=split, data_collator=collator)
    set_seed(0)  # the sampler's order and the workers' seeds
    return list(trainer.get_train_dataloader())


@needs_speech
def test_on_the_fly_gives_the_batches_prepared_up_front_and_holds_a_manifest(script, stamped_repo, release,
                                                                             monkeypatch, tmp_path):
    data_args, training_args = parsed(script, monkeypatch, release, tmp_path, "--dataloader_num_workers", "2")
    up_front, collator, model = prepare(script, stamped_repo, data_args, training_args, on_the_fly=False)
    manifest, reading_collator, _ = prepare(script, stamped_repo, data_args, training_args, on_the_fly=True)
    assert len(manifest) == len(up_front) > 8
    expected = batches(script, model, training_args, up_front, collator)
    got = batches(script, model, training_args, manifest, reading_collator)
    assert len(got) == len(expected) >= 3
    for made_up_front, made_on_the_fly in zip(expected, got):
        assert set(made_on_the_fly) == set(made_up_front)
        for key, tensor in made_up_front.items():
            assert torch.equal(made_on_the_fly[key], tensor), key
    # What is held before training: paths, labels and lengths, not features.
    assert "input_features" not in manifest.column_names
    assert manifest.data.nbytes * 100 < up_front.data.nbytes


@needs_speech
def test_length_grouping_sorts_by_the_listed_durations(script, stamped_repo, release, monkeypatch, tmp_path):
    listed = tmp_path / "cv"
    shutil.copytree(release, listed)
    clips = sorted(path.name for path in (listed / LOCALE / "clips").iterdir())
    # Durations unlike the clips' own (all about 3 s), so that decoding would sort otherwise.
    milliseconds = {name: 1000 + 1500 * index for index, name in enumerate(clips)}
    list_durations(listed / LOCALE, milliseconds)
    data_args, training_args = parsed(script, monkeypatch, listed, tmp_path / "out", "--group_by_length",
                                      "--max_duration_in_seconds", "30")
    manifest, collator, model = prepare(script, stamped_repo, data_args, training_args, on_the_fly=True)
    lengths = script.ctc_frames.InputLengthFromSamples(collator.feature_extractor)
    names = [cell["path"].rsplit("/", 1)[1] for cell in manifest.with_format("arrow")["audio"].to_pylist()]
    assert manifest["length"][:] == [lengths(16 * milliseconds[name]) for name in names]
    trainer = script.CTCTrainer(model=model, args=training_args, train_dataset=manifest, data_collator=collator)
    assert list(trainer.get_train_dataloader().batch_sampler.sampler.lengths) == manifest["length"][:]


@needs_speech
def test_a_clip_that_fails_at_batch_time_is_counted_and_training_goes_on(release, tmp_path):
    damaged = tmp_path / "cv"
    shutil.copytree(release, damaged)
    clips = damaged / LOCALE / "clips"
    train_clips = [line.split("\t")[1] for line in (damaged / LOCALE / "train.tsv").read_text().splitlines()[1:]]
    # Listed at its old length, so nothing reads it before its batch is made.
    (clips / train_clips[0]).write_bytes(random.Random(7).randbytes(4096))
    repo = new_repo(LOCALE, tmp_path / "repo", base_model="tiny")
    # One epoch at batch 4 draws every clip once.
    steps = -(-len(train_clips) // 4)
    output = train_briefly(repo, damaged, repo / "out", "--features_on_the_fly", "yes", "--logging_steps", "1",
                           "--dataloader_num_workers", "1", max_steps=steps)
    assert drop_table(output)["unreadable audio"] == "0"  # nothing was decoded up front
    assert drop_table(output)["kept"] == str(len(train_clips))
    assert f"Dropping unreadable clip {clips / train_clips[0]}" in output
    assert "1 clips were left out of their batches" in output
    results = json.loads((repo / "out" / "train_results.json").read_text(encoding="utf-8"))
    assert results["train_clips_dropped_while_batching"] == 1
    state = json.loads((repo / "out" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == steps
    logged = [entry for entry in state["log_history"] if "clips_dropped_while_batching/unreadable audio" in entry]
    assert [entry["clips_dropped_while_batching/unreadable audio"] for entry in logged] == [1]


def test_a_batch_without_usable_clips_is_skipped_and_its_drops_logged(script, stamped_repo, tmp_path):
    model = AutoModelForCTC.from_config(AutoConfig.from_pretrained(stamped_repo))
    trainer = script.CTCTrainer(model=model, args=script.SpeechTrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    feature_extractor = AutoFeatureExtractor.from_pretrained(stamped_repo)
    reasons = script.clip_preparation
    data_args = script.DataTrainingArguments(dataset_name="unused", max_duration_in_seconds=1.0)
    reader = reasons.ClipPreparer(feature_extractor, Wav2Vec2CTCTokenizer.from_pretrained(stamped_repo),
                                  "input_features", "length", "audio", data_args, on_the_fly=True)
    collator = reasons.DataCollatorCTCWithPadding(feature_extractor, reader.tokenizer, "input_features",
                                                  clip_reader=reader)
    two_seconds = tmp_path / "two_seconds.wav"
    soundfile.write(two_seconds, np.zeros(32000, dtype=np.float32), 16000)
    # Manifest rows: a file that has gone, and one longer than it was listed (too long now).
    rows = [{"audio": {"path": str(tmp_path / "gone.mp3"), "bytes": None}},
            {"audio": {"path": str(two_seconds), "bytes": None}}] * 2
    batch = collator([{**row, "labels": [1], "length": 40, "duration": 0.8, reasons.SPEED_PERTURBED: False}
                      for row in rows])
    weights = [parameter.detach().clone() for parameter in model.parameters()]
    assert trainer.training_step(model, batch).item() == 0
    assert all(parameter.grad is None for parameter in model.parameters())
    assert trainer.prediction_step(model, batch, prediction_loss_only=False) == (None, None, None)
    trainer.log({"loss": 1.0})  # the batch was made twice: a training step and an evaluation step
    assert trainer.state.log_history[-1]["clips_dropped_while_batching/unreadable audio"] == 4
    assert trainer.state.log_history[-1]["clips_dropped_while_batching/longer than max_duration_in_seconds"] == 4
    trainer.log({"loss": 1.0})  # counted once: the next entry starts again from nothing
    totals = script.features_on_the_fly.batch_drop_totals(trainer.state.log_history)
    assert totals == {reasons.UNREADABLE_AUDIO: 4, reasons.LONGER_THAN_MAX: 4}
    assert all(torch.equal(before, after) for before, after in zip(weights, model.parameters()))


@pytest.mark.parametrize("listed_seconds, keep_waveform, expected", [
    # The tiny model's log-mel inputs take 32,000 bytes a second; 2 GiB is 67,109 s of them.
    ([60_000.0], False, False),
    ([70_000.0], False, True),
    ([40_000.0], True, True),  # kept as 16 kHz samples, 64,000 bytes a second
    ([3.0] * 1000, False, False),
    ([None] * 20_000, False, True),  # unlisted: TYPICAL_CLIP_SECONDS each, 100,000 s
])
def test_auto_computes_large_splits_on_the_fly(script, stamped_repo, listed_seconds, keep_waveform, expected):
    split = datasets.Dataset.from_dict({"duration": listed_seconds},
                                       features=datasets.Features({"duration": datasets.Value("float64")}))
    extractor = AutoFeatureExtractor.from_pretrained(stamped_repo)
    on_the_fly = script.features_on_the_fly
    assert on_the_fly.computes_on_the_fly("auto", split, extractor, keep_waveform, "train") is expected
    assert on_the_fly.computes_on_the_fly("yes", split, extractor, keep_waveform, "train") is True
    assert on_the_fly.computes_on_the_fly("no", split, extractor, keep_waveform, "train") is False


@pytest.mark.parametrize("extractor", [SeamlessM4TFeatureExtractor(), Wav2Vec2FeatureExtractor()],
                         ids=["log-mel", "waveform"])
def test_input_length_from_samples_is_the_extractors_own(script, extractor):
    lengths = script.ctc_frames.InputLengthFromSamples(extractor)
    assert lengths.arithmetic is not None, "the known arithmetic no longer matches the extractor"
    input_name = extractor.model_input_names[0]
    for samples in (400, 401, 559, 560, 880, 16_000, 16_161, 47_999, 80_320):
        made = extractor(np.zeros(samples, dtype=np.float32), sampling_rate=16000)[input_name][0]
        assert lengths(samples) == len(made), samples
