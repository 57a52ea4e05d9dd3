"""The repo training script's own additions: the tristage schedule, speed perturbation,
length grouping by the length column, output frames counted from each clip's own input
length, resuming (past a corrupted checkpoint) and a two-process run. The schedule, perturbation and sampler are checked in process on the
script imported as a module; the rest runs the script on a tiny hy-AM repo trained from
scratch on synthesised speech."""

import io
import json
import math
import os
import random
import re
import shutil
import sys

import datasets
import numpy as np
import pytest
import torch
from conftest import needs_speech, run_script, succeeded, synthesised_release
from repo_script import SCRIPT
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC, Wav2Vec2CTCTokenizer

from ctcforge.new import new_repo
from ctcforge.runtime.errors import CtcforgeError

LEARNING_RATE = 2e-3
STEPS = 30  # the short run; it saves a checkpoint halfway, which the resume tests start from


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


# `stamped_repo` (a tiny hy-AM repo stamped without a dataset, so needing no espeak-ng) and
# `script` (its training script imported as a module) are conftest's.


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A synthesised Common Voice release and a repo whose vocabulary comes from it."""
    work = tmp_path_factory.mktemp("training")
    release = synthesised_release(work / "cv", 40, seed=1)
    speech_repo = new_repo("hy-AM", work / "repo", base_model="tiny", dataset=str(release))
    return speech_repo, release


def train(speech, output_dir, *extra, launcher=(sys.executable,), timeout=600):
    repo, release = speech
    return succeeded(run_script(repo, "--model_name_or_path", "./", "--dataset_name", release,
                                "--dataset_config_name", "hy-AM", "--output_dir", output_dir, "--do_train",
                                "--per_device_train_batch_size", "8", "--learning_rate", LEARNING_RATE,
                                "--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0", "--seed", "1",
                                "--disable_tqdm", "true", *extra, launcher=launcher, timeout=timeout))


# The arguments of the short run and of its resumed copy: identical, so that the resumed
# run must end with the same weights.
SHORT_RUN = ("--max_steps", str(STEPS), "--save_steps", str(STEPS // 2), "--logging_steps", "1",
             "--lr_scheduler_type", "tristage", "--lr_scheduler_ratios", "0.1", "0.4", "0.5",
             "--adam_beta2", "0.98")


@pytest.fixture(scope="module")
def short_run(speech, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("short-run") / "out"
    train(speech, output_dir, *SHORT_RUN)
    return output_dir


@pytest.fixture(scope="module")
def resumed_run(speech, short_run, tmp_path_factory):
    """The short run as if killed while saving its last checkpoint: what was written before
    training, the halfway checkpoint, and the last checkpoint with its weights cut short."""
    output_dir = tmp_path_factory.mktemp("resumed-run") / "out"
    output_dir.mkdir()
    for name in ("vocab.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(short_run / name, output_dir / name)
    shutil.copytree(short_run / f"checkpoint-{STEPS // 2}", output_dir / f"checkpoint-{STEPS // 2}")
    cut = output_dir / f"checkpoint-{STEPS}"
    shutil.copytree(short_run / f"checkpoint-{STEPS}", cut)
    weights = cut / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    result = train(speech, output_dir, *SHORT_RUN)
    return output_dir, result.stdout + result.stderr


def trainer_state(output_dir):
    return json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))


def logged(output_dir, key):
    return {entry["step"]: entry[key] for entry in trainer_state(output_dir)["log_history"] if key in entry}


# ---------------------------------------------------------------------------------------
# Tristage schedule
# ---------------------------------------------------------------------------------------


def learning_rates(script, steps, ratios, **scales):
    """The learning rate before each optimizer step 0..steps, as a fraction of the peak."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LEARNING_RATE)
    schedule = script.training_schedule.tristage_schedule(optimizer, steps, ratios, **scales)
    rates = []
    for _ in range(steps + 1):
        rates.append(schedule.get_last_lr()[0] / LEARNING_RATE)
        optimizer.step()
        schedule.step()
    return rates


@pytest.mark.parametrize(
    "ratios, scales, step, expected",
    [
        # fairseq's defaults over 100 steps: warm up over 0..10, hold over 10..50, decay to 100.
        ([0.1, 0.4, 0.5], {}, 0, 0.01),
        ([0.1, 0.4, 0.5], {}, 5, 0.01 + 0.99 * 5 / 10),
        ([0.1, 0.4, 0.5], {}, 10, 1.0),
        ([0.1, 0.4, 0.5], {}, 30, 1.0),
        ([0.1, 0.4, 0.5], {}, 50, 1.0),
        ([0.1, 0.4, 0.5], {}, 75, math.sqrt(0.05)),  # halfway through an exponential decay
        ([0.1, 0.4, 0.5], {}, 100, 0.05),
        # Other shares and scales.
        ([0.25, 0.25, 0.5], {"init_lr_scale": 0.0, "final_lr_scale": 0.1}, 0, 0.0),
        ([0.25, 0.25, 0.5], {"init_lr_scale": 0.0, "final_lr_scale": 0.1}, 25, 1.0),
        ([0.25, 0.25, 0.5], {"init_lr_scale": 0.0, "final_lr_scale": 0.1}, 100, 0.1),
        # No hold: the decay starts where the warm-up ends.
        ([0.3, 0.0, 0.7], {}, 30, 1.0),
        ([0.3, 0.0, 0.7], {}, 31, 0.05 ** (1 / 70)),
    ],
)
def test_tristage_learning_rate_at_step(script, ratios, scales, step, expected):
    assert learning_rates(script, 100, ratios, **scales)[step] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_tristage_stages_follow_the_ratios(script):
    rates = learning_rates(script, 100, [0.1, 0.4, 0.5])
    assert all(a < b for a, b in zip(rates[0:10], rates[1:11])), "warm-up must rise every step"
    assert rates[10:51] == [1.0] * 41, "the learning rate must hold from step 10 to step 50"
    assert all(a > b for a, b in zip(rates[50:100], rates[51:101])), "decay must fall every step"


@pytest.mark.parametrize("ratios, message", [
    (["0.5", "0.5", "0.5"], "--lr_scheduler_ratios [0.5, 0.5, 0.5] must add up to 1"),
    (["0.5", "0.5"], "--lr_scheduler_ratios takes three shares: warm-up, hold and decay"),
    (["1.2", "-0.2", "0.0"], "--lr_scheduler_ratios takes three shares: warm-up, hold and decay"),
])
def test_tristage_ratios_are_refused_in_one_line(script, monkeypatch, tmp_path, ratios, message):
    with pytest.raises(script.CtcforgeError) as stopped:
        parsed_arguments(script, monkeypatch, tmp_path, "--lr_scheduler_type", "tristage",
                         "--lr_scheduler_ratios", *ratios)
    assert str(stopped.value) == message


class FakeClock:
    """Stands in for TrainingClock: the share of the budget used is set by the test."""

    def __init__(self, used):
        self.share = used

    def used(self):
        return self.share


@pytest.mark.parametrize("step, used, expected_step", [
    (0, 0.0, 0),      # before the clock starts, steps rule
    (5, 0.0, 5),
    (5, 0.5, 50),     # half the time gone: the schedule is half-way through a 100-step run
    (80, 0.5, 80),    # more steps taken than the clock says: steps rule
    (3, 1.0, 100),    # time is up: the end of the schedule
])
def test_schedule_follows_the_clock_or_the_steps_whichever_is_further(script, step, used, expected_step):
    seen = []
    scale = script.training_schedule.follow_clock(lambda s: seen.append(s) or 0.5, FakeClock(used), 100)
    assert scale(step) == 0.5 and seen == [expected_step]


def test_time_budget_needs_a_warmup_fraction(script, tmp_path):
    common = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_train_minutes=5)
    with pytest.raises(ValueError, match="fraction of the run"):
        script.SpeechTrainingArguments(warmup_steps=100, **common)
    with pytest.raises(ValueError, match="more than 0"):
        script.SpeechTrainingArguments(**{**common, "max_train_minutes": 0})
    assert script.SpeechTrainingArguments(warmup_steps=0.1, **common).max_train_minutes == 5


def test_evaluation_counts_each_clips_frames_from_its_own_input_length(script, stamped_repo, tiny_model, tmp_path):
    trainer = script.CTCTrainer(model=tiny_model.eval(), args=script.SpeechTrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    extractor = AutoFeatureExtractor.from_pretrained(stamped_repo)
    input_name = extractor.model_input_names[0]
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(16160).astype(np.float32), rng.standard_normal(4000).astype(np.float32)]
    # Extracted in one batch, as eval.py does, 16160 samples give 50 feature rows, the last
    # holding a single real frame, which the attention mask leaves out: counted from the
    # mask, the clip would lose the frame that eval.py and the pipeline decode.
    batch = dict(extractor(clips, sampling_rate=16000, padding=True, return_tensors="pt"))
    alone = [len(extractor(clip, sampling_rate=16000)[input_name][0]) for clip in clips]
    assert int(batch["attention_mask"][0].sum()) < alone[0] == batch[input_name].shape[1]
    batch[script.clip_preparation.INPUT_LENGTHS] = torch.tensor(alone)
    _, ids, _ = trainer.prediction_step(tiny_model, batch, prediction_loss_only=False)
    frames = script.ctc_frames.output_frames(tiny_model, alone)
    assert ids.shape[1] == frames[0] > frames[1]
    assert (ids[0] != -100).all(), "the long clip's last frame, which eval.py and the pipeline decode, was dropped"
    assert (ids[1, :frames[1]] != -100).all()
    assert (ids[1, frames[1]:] == -100).all(), "padding frames of the short clip must be blank"


def parsed_arguments(script, monkeypatch, output_dir, *extra):
    monkeypatch.setattr(sys, "argv", [SCRIPT, "--model_name_or_path", "./", "--dataset_name", "unused",
                                      "--output_dir", str(output_dir), "--use_cpu", "--report_to", "none",
                                      *extra])
    model_args, data_args, training_args = script.parse_arguments()
    return data_args, script.resolve_training_arguments(data_args, training_args)


@pytest.fixture
def tiny_model(stamped_repo):
    return AutoModelForCTC.from_config(AutoConfig.from_pretrained(stamped_repo))


def test_tristage_and_adam_betas_reach_the_optimizer_and_the_card(script, monkeypatch, tmp_path, tiny_model):
    data_args, training_args = parsed_arguments(
        script, monkeypatch, tmp_path, "--max_steps", "100", "--learning_rate", str(LEARNING_RATE),
        "--lr_scheduler_type", "tristage", "--lr_scheduler_ratios", "0.1", "0.4", "0.5",
        "--adam_beta1", "0.85", "--adam_beta2", "0.98",
    )
    assert training_args.lr_scheduler_type == "tristage"
    trainer = script.CTCTrainer(model=tiny_model, args=training_args)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    assert all(group["betas"] == (0.85, 0.98) for group in trainer.optimizer.param_groups)
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.01 * LEARNING_RATE)

    # A second train() call gets a schedule of its own steps, as with the Trainer's schedules.
    for _ in range(10):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(LEARNING_RATE)
    trainer.create_scheduler(num_training_steps=1000)
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.01 * LEARNING_RATE)

    card = script.repo_files.card_hyperparameters(training_args)
    assert card["lr_scheduler_type"] == "tristage"
    assert card["lr_scheduler_ratios"] == [0.1, 0.4, 0.5]
    assert "betas=(0.85,0.98)" in card["optimizer"]
    assert "lr_scheduler_warmup_steps" not in card
    # As `ctcforge card` writes each hyperparameter line.
    lines = [f"- {key}: {value}" for key, value in json.loads(json.dumps(card)).items()]
    assert "- lr_scheduler_type: tristage" in lines
    assert "- lr_scheduler_ratios: [0.1, 0.4, 0.5]" in lines


# ---------------------------------------------------------------------------------------
# Speed perturbation
# ---------------------------------------------------------------------------------------

RATE = 16000


def tone(frequency=440.0, seconds=1.0):
    return np.sin(2 * np.pi * frequency * np.arange(int(RATE * seconds)) / RATE).astype(np.float32)


def dominant_frequency(waveform):
    spectrum = np.abs(np.fft.rfft(waveform))
    return np.fft.rfftfreq(len(waveform), 1 / RATE)[spectrum.argmax()]


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1])
def test_speed_changes_length_and_pitch_by_the_factor(script, factor):
    played = script.clip_preparation.change_speed(tone(), factor, RATE)
    assert abs(len(played) - RATE / factor) <= 1
    assert dominant_frequency(played) == pytest.approx(440 * factor, abs=2)


def test_speed_perturbation_draws_every_factor_reproducibly(script):
    perturb = script.clip_preparation.SpeedPerturbation([0.9, 1.0, 1.1], RATE)
    clip = tone(seconds=0.5)

    def lengths():
        random.seed(7)
        return [len(perturb(clip)) for _ in range(40)]

    torch_state = torch.get_rng_state()
    first = lengths()
    assert set(first) == {round(len(clip) / factor) for factor in (0.9, 1.0, 1.1)}
    assert lengths() == first
    # Batch order and dropout draw from torch's generator; perturbing must not shift them.
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_collator_plays_kept_audio_at_a_drawn_speed(script, stamped_repo):
    feature_extractor = AutoFeatureExtractor.from_pretrained(stamped_repo)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(stamped_repo)
    input_name = feature_extractor.model_input_names[0]
    clip = tone(seconds=2.0)
    unperturbed = len(feature_extractor(clip, sampling_rate=RATE)[input_name][0])
    collator = script.clip_preparation.DataCollatorCTCWithPadding(feature_extractor, tokenizer, input_name,
                                                 script.clip_preparation.SpeedPerturbation([1.25], RATE))
    batch = collator([{script.clip_preparation.WAVEFORM_COLUMN: clip.tolist(), "labels": [1, 2, 3], "length": unperturbed}])
    assert batch[input_name].shape[1] == pytest.approx(unperturbed / 1.25, abs=2)
    assert batch["labels"].tolist() == [[1, 2, 3]]
    # The evaluation counts a clip's frames from its input length at the speed it was played.
    assert batch[script.clip_preparation.INPUT_LENGTHS].tolist() == [batch[input_name].shape[1]]


def test_collator_records_each_clips_unpadded_length(script, stamped_repo):
    feature_extractor = AutoFeatureExtractor.from_pretrained(stamped_repo)
    input_name = feature_extractor.model_input_names[0]
    features = [feature_extractor(tone(seconds=seconds), sampling_rate=RATE)[input_name][0] for seconds in (1.01, 0.3)]
    collator = script.clip_preparation.DataCollatorCTCWithPadding(
        feature_extractor, Wav2Vec2CTCTokenizer.from_pretrained(stamped_repo), input_name)
    batch = collator([{input_name: clip, "labels": [1]} for clip in features])
    assert batch[script.clip_preparation.INPUT_LENGTHS].tolist() == [len(clip) for clip in features]


class FramesAreInputs:
    """A stand-in model whose every input unit is one output frame."""

    @staticmethod
    def _get_feat_extract_output_lengths(lengths):
        return lengths


def test_labels_must_fit_the_fastest_speed(script):
    prepared = datasets.Dataset.from_dict({"labels": [[1, 2, 3, 4, 5]] * 2, "length": [5, 6],
                                           "drop_reason": ["", ""]})
    kept, _ = script.clip_preparation.drop_unusable_clips(prepared, FramesAreInputs(), "length")
    assert kept["length"][:] == [5, 6]
    # At 1.2 times the speed, 5 frames become 4 (too few for 5 labels) and 6 stay 5.
    kept, dropped = script.clip_preparation.drop_unusable_clips(prepared, FramesAreInputs(), "length", fastest_speed=1.2)
    assert kept["length"][:] == [6]
    assert dropped[script.clip_preparation.TOO_MANY_LABELS] == 1


# ---------------------------------------------------------------------------------------
# group_by_length and checkpoints
# ---------------------------------------------------------------------------------------


def test_group_by_length_sorts_by_the_length_column(script, monkeypatch, tmp_path, tiny_model):
    _, training_args = parsed_arguments(script, monkeypatch, tmp_path, "--group_by_length",
                                        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2")
    lengths = [40, 7, 300, 12, 95, 5, 61, 250]
    # Every clip is one feature row long: a sampler that measured the clips would see only 1s.
    clips = datasets.Dataset.from_dict({"input_features": [[[0.0] * 4]] * len(lengths),
                                        "labels": [[1]] * len(lengths), "length": lengths})
    trainer = script.CTCTrainer(model=tiny_model, args=training_args, train_dataset=clips, eval_dataset=clips,
                                data_collator=lambda examples: examples)
    for loader in (trainer.get_train_dataloader(), trainer.get_eval_dataloader()):
        sampler = loader.batch_sampler.sampler
        assert list(sampler.lengths) == lengths
        assert sorted(sampler) == list(range(len(lengths)))
        batches = [[lengths[index] for index in batch] for batch in loader.batch_sampler]
        assert all(batch == sorted(batch, reverse=True) for batch in batches), batches


def make_checkpoint(folder, *, state=True, weights=True):
    folder.mkdir(parents=True)
    if state:
        (folder / "trainer_state.json").write_text("{}", encoding="utf-8")
    if weights:
        save_file({"weight": torch.ones(64, 64)}, str(folder / "model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.ones(64, 64)}}}, folder / "optimizer.pt")
    torch.save({"last_epoch": 3}, folder / "scheduler.pt")
    torch.save({"python": 1}, folder / "rng_state.pth")
    return folder


def test_newest_complete_checkpoint_is_chosen_and_broken_ones_named(script, tmp_path, caplog):
    make_checkpoint(tmp_path / "checkpoint-2")
    complete = make_checkpoint(tmp_path / "checkpoint-4")
    make_checkpoint(tmp_path / "checkpoint-6", state=False)
    cut = make_checkpoint(tmp_path / "checkpoint-8") / "model.safetensors"
    os.truncate(cut, cut.stat().st_size // 2)
    make_checkpoint(tmp_path / "checkpoint-10", weights=False)
    for step, part in ((12, "optimizer.pt"), (14, "scheduler.pt"), (16, "rng_state.pth")):
        cut = make_checkpoint(tmp_path / f"checkpoint-{step}") / part
        os.truncate(cut, cut.stat().st_size // 2)
    with caplog.at_level("WARNING"):
        assert script.checkpoints.last_complete_checkpoint(tmp_path) == complete
    warnings = caplog.text
    for step, part in ((12, "optimizer.pt"), (14, "scheduler.pt"), (16, "rng_state.pth")):
        assert f"checkpoint-{step}: {part} is cut short or damaged" in warnings
    assert "checkpoint-10: no model weights" in warnings
    assert "checkpoint-8: model.safetensors does not load" in warnings
    assert "checkpoint-6: no trainer_state.json" in warnings
    assert "checkpoint-2" not in warnings


def test_a_disk_full_while_saving_a_checkpoint_is_one_line_and_the_half_checkpoint_skipped(
        script, stamped_repo, tiny_model, monkeypatch, tmp_path, caplog):
    """A step of real training in process, its checkpoint's weights cut off by a
    full disk (OSError ENOSPC, as safetensors raises it there) half way through writing."""
    import errno

    import transformers.modeling_utils

    def disk_fills_up(state_dict, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", disk_fills_up)
    extractor = AutoFeatureExtractor.from_pretrained(stamped_repo)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(stamped_repo)
    input_name = extractor.model_input_names[0]
    rng = np.random.default_rng(0)
    clips = [extractor(rng.standard_normal(16000).astype(np.float32), sampling_rate=16000)[input_name][0]
             for _ in range(4)]
    dataset = datasets.Dataset.from_dict({input_name: [np.asarray(c).tolist() for c in clips],
                                          "labels": [[5, 6, 7]] * 4})
    _, training_args = parsed_arguments(script, monkeypatch, tmp_path, "--max_steps", "1", "--save_steps", "1",
                                        "--per_device_train_batch_size", "2", "--disable_tqdm", "true")
    trainer = script.CTCTrainer(model=tiny_model, args=training_args, train_dataset=dataset,
                                data_collator=script.clip_preparation.DataCollatorCTCWithPadding(
                                    extractor, tokenizer, input_name))
    with pytest.raises(script.CtcforgeError) as stopped:
        with script.checkpoints.explain_full_disk(tmp_path, trainer):
            trainer.train()
    message = str(stopped.value)
    weights = sum(t.numel() * t.element_size() for t in tiny_model.state_dict().values())
    optimizer_state = sum(value.numel() * value.element_size() for state in trainer.optimizer.state.values()
                          for value in state.values() if torch.is_tensor(value))
    assert optimizer_state > weights, "AdamW keeps two moments of every trained weight"
    assert message.startswith(f"the disk holding {tmp_path} is full (") and "\n" not in message
    assert (f"a checkpoint needs about {(weights + optimizer_state) / 1e6:.1f} MB ({weights / 1e6:.1f} MB of "
            f"weights and {optimizer_state / 1e6:.1f} MB of optimizer state)") in message
    assert "skips the unfinished checkpoint-1" in message
    with caplog.at_level("WARNING"):
        assert script.checkpoints.last_complete_checkpoint(tmp_path) is None
    assert "checkpoint-1: no trainer_state.json" in caplog.text


@pytest.mark.parametrize("error, full", [
    (OSError(28, "No space left on device"), True),
    (RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"), False),
    (RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed"), True),
    (OSError(13, "Permission denied"), False),
])
def test_the_signs_of_a_full_disk(script, error, full):
    assert script.checkpoints.disk_is_full(error) is full
    try:
        try:
            raise error
        except Exception as first:
            raise RuntimeError("saving failed") from first
    except RuntimeError as chained:
        assert script.checkpoints.disk_is_full(chained) is full


CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"


@pytest.mark.parametrize("files, config, message", [
    ({"hy-AM/train.tsv": CV_HEADER, "hy-AM/dev.tsv": CV_HEADER, "hy-AM/clips/.keep": ""}, "hy-AM",
     r"train\.tsv lists no clips \(header only\); choose another split than 'train'"),
    ({"metadata.csv": "file_name,sentence\n"}, None, r"metadata\.csv lists no files"),
])
def test_a_training_split_with_no_rows_stops_naming_it(script, tmp_path, files, config, message):
    """It used to fail later, with "Column 'target_text' doesn't exist"."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    data_args = script.DataTrainingArguments(dataset_name=str(tmp_path), dataset_config_name=config)
    with pytest.raises(script.CtcforgeError, match=rf"^.*{message}"):
        script.load_split(data_args, "train", 16000, None)


@pytest.mark.parametrize("name, content, problem", [
    ("config.json", '{"model_type": "wav2vec2-bert", "vocab_si', "config.json is not valid JSON (Unterminated string"),
    ("config.json", "[1, 2]", "config.json is not a JSON object"),
    ("preprocessor_config.json", "", "preprocessor_config.json is not valid JSON (Expecting value"),
    ("config.json", None, "has no config.json; restore it"),
])
def test_a_model_folder_whose_settings_do_not_parse_is_one_line_naming_the_fix(script, stamped_repo, tmp_path, name,
                                                                                content, problem):
    """Both scripts load a local model folder's config.json first: training through
    starting_weights.check_reachable, eval.py through repo_files.trained_model_folder."""
    from ctcforge.runtime import repo_files, starting_weights

    folder = shutil.copytree(stamped_repo, tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"weights")  # looked for, not read
    if content is None:
        (folder / name).unlink()
    else:
        (folder / name).write_text(content, encoding="utf-8")
    with pytest.raises(CtcforgeError) as from_eval:
        repo_files.trained_model_folder(str(folder), str(folder))
    with pytest.raises(CtcforgeError) as from_training:
        starting_weights.check_model_json(str(folder))
    for error in (str(from_eval.value), str(from_training.value)):
        assert problem in error and "\n" not in error
        assert "ctcforge new --force" in error
    with pytest.raises(script.CtcforgeError, match=re.escape(problem)):
        script.starting_weights.check_reachable(str(folder))


@pytest.mark.parametrize("cpus, load, env, requested, processes, threads", [
    (2, 0.1, None, None, 1, 2),    # a quiet machine: every core
    (2, 1.0, None, None, 1, 1),    # one other job on 2 cores: one thread, not two fighting it
    (2, 4.5, None, None, 1, 1),    # the busy machine of the demo: one thread
    (16, 3.4, None, None, 1, 13),
    (2, 4.5, None, 2, 1, 2),       # --torch_threads decides
    (2, 4.5, "3", None, 1, None),  # so does OMP_NUM_THREADS, which torch has read already
    (2, 0.1, None, None, 2, None),  # several processes: accelerate shares the cores out
])
def test_torch_threads_follow_the_cores_the_load_leaves_free(script, monkeypatch, cpus, load, env, requested,
                                                              processes, threads):
    module = script.cpu_threads
    monkeypatch.setattr(module, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(module, "busy_cpus", lambda: load)
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    before = torch.get_num_threads()
    try:
        message = module.set_torch_threads(requested, processes)
        assert torch.get_num_threads() == (before if threads is None else threads), message
    finally:
        torch.set_num_threads(before)
    assert message.startswith("torch threads: ")


def test_busy_cpus_are_measured_not_read_from_the_load_average(script, monkeypatch):
    """Other jobs' work is what /proc/stat counts while this process sleeps; the 1-minute
    load average (here a stale 7.0) is only the fallback."""
    module = script.cpu_threads
    samples = ["cpu  100 0 100 800 0 0 0 0 0 0\n", "cpu  250 0 100 850 0 0 0 0 0 0\n"]

    def proc_stat(*args, **kwargs):
        if not samples:
            raise FileNotFoundError("/proc/stat")
        return io.StringIO(samples.pop(0))

    monkeypatch.setattr(module, "open", proc_stat, raising=False)
    monkeypatch.setattr(module.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(module.os, "getloadavg", lambda: (7.0, 7.0, 7.0))
    monkeypatch.setattr(module.os, "cpu_count", lambda: 2)
    assert module.busy_cpus() == pytest.approx(2 * 150 / 200)  # 150 of 200 ticks busy on 2 CPUs
    # no /proc/stat
    assert module.busy_cpus() == 7.0


def test_torch_threads_below_one_are_refused_in_one_line(script, monkeypatch, tmp_path):
    with pytest.raises(script.CtcforgeError, match=r"^--torch_threads must be at least 1, not 0$"):
        parsed_arguments(script, monkeypatch, tmp_path, "--torch_threads", "0")


# ---------------------------------------------------------------------------------------
# Runs of the script
# ---------------------------------------------------------------------------------------


@needs_speech
def test_short_run_lowers_the_training_loss(short_run):
    losses = logged(short_run, "loss")
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert losses[STEPS] < 0.6 * losses[1], losses


@needs_speech
def test_short_run_writes_a_loadable_model_and_its_records(short_run):
    model = AutoModelForCTC.from_pretrained(short_run)
    vocab = json.loads((short_run / "vocab.json").read_text(encoding="utf-8"))
    assert model.config.vocab_size == len(vocab)
    assert trainer_state(short_run)["global_step"] == STEPS
    results = json.loads((short_run / "all_results.json").read_text(encoding="utf-8"))
    assert math.isfinite(results["train_loss"]) and results["train_samples"] > 0
    hyperparameters = json.loads((short_run / "training_hyperparameters.json").read_text(encoding="utf-8"))
    assert hyperparameters["lr_scheduler_type"] == "tristage"
    assert hyperparameters["lr_scheduler_ratios"] == [0.1, 0.4, 0.5]
    assert hyperparameters["training_steps"] == STEPS
    assert "betas=(0.9,0.98)" in hyperparameters["optimizer"]


@needs_speech
def test_short_run_follows_the_tristage_schedule_with_the_given_betas(script, short_run):
    # Step s is logged with the learning rate its update used, the schedule's value at s - 1.
    warmup, hold, decay = (int(STEPS * share) for share in (0.1, 0.4, 0.5))
    for step, rate in logged(short_run, "learning_rate").items():
        expected = script.training_schedule.tristage_lr_scale(step - 1, warmup, hold, decay, 0.01, 0.05)
        assert rate == pytest.approx(LEARNING_RATE * expected), step
    optimizer = torch.load(short_run / f"checkpoint-{STEPS}" / "optimizer.pt", weights_only=True)
    assert all(tuple(group["betas"]) == (0.9, 0.98) for group in optimizer["param_groups"])


@needs_speech
def test_resumed_run_ends_where_the_uninterrupted_one_did(short_run, resumed_run):
    output_dir, output = resumed_run
    assert f"Resuming from {output_dir / f'checkpoint-{STEPS // 2}'}" in output
    assert trainer_state(output_dir)["global_step"] == STEPS
    uninterrupted = load_file(str(short_run / "model.safetensors"))
    resumed = load_file(str(output_dir / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-5), name


@needs_speech
def test_resuming_skips_a_checkpoint_cut_short_with_a_warning(script, resumed_run):
    output_dir, output = resumed_run
    assert f"Skipping {output_dir / f'checkpoint-{STEPS}'}: model.safetensors does not load" in output
    # The run saved that checkpoint again, whole this time.
    assert script.checkpoints.checkpoint_problem(output_dir / f"checkpoint-{STEPS}") is None


@needs_speech
@pytest.mark.timeout(600)
@needs_speech
def test_time_budget_stops_training_and_decays_the_learning_rate(speech, tmp_path):
    # 2,000 steps would take minutes; a 12-second budget must stop the run and save the model.
    train(speech, tmp_path, "--max_steps", "2000", "--max_train_minutes", "0.2", "--logging_steps", "1",
          "--warmup_steps", "0.1")
    hyperparameters = json.loads((tmp_path / "training_hyperparameters.json").read_text())
    steps = hyperparameters["training_steps"]
    assert hyperparameters["training_time_budget_minutes"] == 0.2 and 2 <= steps < 2000, steps
    assert (tmp_path / "model.safetensors").is_file()
    rates = [e["learning_rate"] for e in json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
             if "learning_rate" in e]
    # Linear schedule over the budget: up during the first tenth of the time, then down towards 0
    # at its end. A 2,000-step schedule would still be warming up over 200 steps, its rate rising
    # at every step. How near 0 the last logged rate gets depends on how long a step takes on
    # this machine (a step of a twelfth of the budget leaves a twelfth of the rate), so it is
    # bounded loosely; that the rate falls after its peak is what a slow machine cannot change.
    peak = rates.index(max(rates))
    assert peak < len(rates) - 1 and all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:])), (steps, rates)
    assert rates[-1] < 0.5 * max(rates) and rates[-1] < 0.5 * LEARNING_RATE, (steps, rates)


def test_two_processes_train_with_layerdrop_and_gradient_checkpointing(speech, tmp_path):
    """The card's regularisation under DDP: a layer layerdrop skips gets no gradient, which
    stopped DDP at its first step until the script let it look for unused parameters."""
    output_dir = tmp_path / "out"
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    result = train(speech, output_dir, "--max_steps", "3", "--logging_steps", "1", "--layerdrop", "0.5",
                   "--gradient_checkpointing", launcher=torchrun)
    assert trainer_state(output_dir)["global_step"] == 3
    output = result.stdout + result.stderr
    assert "DDP looks for the parameters of skipped layers" in output
    # Quiet by default: the card's own flags raise no deprecation, the hundred arguments stay out.
    assert "`gradient_checkpointing` is deprecated" not in output and "Training/evaluation parameters" not in output
    AutoModelForCTC.from_pretrained(output_dir)


def test_two_process_run_on_cpu(speech, tmp_path):
    output_dir = tmp_path / "out"
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    train(speech, output_dir, "--max_steps", "4", "--save_steps", "2", "--logging_steps", "1",
          "--do_eval", "--eval_split_name", "dev", "--group_by_length",
          "--speed_perturbation", "0.9", "1.0", "1.1", launcher=torchrun)
    assert trainer_state(output_dir)["global_step"] == 4
    hyperparameters = json.loads((output_dir / "training_hyperparameters.json").read_text(encoding="utf-8"))
    assert hyperparameters["total_train_batch_size"] == 2 * 8, "both processes must have trained"
    assert hyperparameters["speed_perturbation"] == [0.9, 1.0, 1.1]
    assert (output_dir / "checkpoint-4" / "trainer_state.json").is_file()
    assert "eval_wer" in json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))
    AutoModelForCTC.from_pretrained(output_dir)
