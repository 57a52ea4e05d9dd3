"""A stamped repo's eval.py: the robust-speech-event files, predictions equal to `pipeline()`
however clips are batched or chunked (for a log-mel model with attention masks and for a
group-norm wav2vec2 without them), the LM really used, every bad input skipped with its
reason and counted, Common Voice and OpenSLR folders, and results written atomically.

Contract tests run eval.py as a subprocess from the repo folder; the others import it.
Models have random weights (seeded), their output layer scaled so that every frame is
confidently some letter: predictions are long non-trivial strings, so two equal lists of
them say something."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
import torch
from conftest import (LOCALE, build_training_text_lm, ffmpeg, needs_speech, pipeline_texts, read_log, run_eval,
                      save_random_weights, save_waveform_extractor, synthesised_release, write_training_run)
from repo_script import repo_script_module
from transformers import AutoFeatureExtractor, Wav2Vec2Config, Wav2Vec2Model, pipeline

from ctcforge.lm_tuning import compute_dev_set
from ctcforge.new import new_repo

pytestmark = needs_speech

RATE = 16000
LM_CLIPS = 6  # beam search is the slow part of these tests


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def release(work):
    return synthesised_release(work / "cv", 24, seed=2)


@pytest.fixture(scope="module")
def tiny_repo(work, release):
    """The `tiny` log-mel model (Wav2Vec2BertForCTC), whose feature extractor returns
    attention masks."""
    repo = new_repo(LOCALE, work / "tiny", base_model="tiny", dataset=str(release))
    save_random_weights(repo)
    return repo


@pytest.fixture(scope="module")
def group_norm_repo(work, release):
    """A raw-waveform wav2vec2 with group norm and no attention masks, as wav2vec2-base."""
    architecture = work / "group-norm-architecture"
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(32,) * 7, feat_extract_norm="group", num_conv_pos_embeddings=16,
                                 num_conv_pos_embedding_groups=4)).save_pretrained(architecture)
    save_waveform_extractor(architecture, attention_mask=False)
    repo = new_repo(LOCALE, work / "group-norm", base_model=str(architecture), dataset=str(release))
    save_random_weights(repo, output_scale=30.0)
    return repo


@pytest.fixture(scope="module")
def lm_repo(work, tiny_repo, release):
    """The tiny repo with a 3-gram from its training text, built by `ctcforge lm`."""
    repo = work / "tiny-lm"
    shutil.copytree(tiny_repo, repo)
    build_training_text_lm(repo, release)
    return repo


@pytest.fixture(scope="module")
def evaluation(tiny_repo):
    """The repo's eval.py as a module (any repo's: they share the file and the profile)."""
    with repo_script_module(tiny_repo, "eval.py") as module:
        yield module


@pytest.fixture(scope="module")
def transcription(evaluation):
    """The repo's runtime transcription module, the very one its eval.py imported (and runs)."""
    return evaluation.runtime.transcription


@pytest.fixture(scope="module")
def clips(evaluation, transcription, release):
    """Clips as eval.py reads them, and lengths that make batching interesting: twelve
    clips, one cut to another's length and a duplicate (equal lengths)."""
    dataset = evaluation.load_speech_dataset(str(release), LOCALE, "validated", sampling_rate=RATE)
    cells = dataset.select(range(12))["audio"]
    arrays = [transcription.read_audio(cell, datasets.Audio(sampling_rate=RATE)) for cell in cells]
    return arrays + [arrays[1][: len(arrays[0])], arrays[2]]


def transcriber(evaluation, repo, batch_size):
    return evaluation.Transcriber(str(repo), torch.device("cpu"), batch_size)


def non_trivial(texts):
    """Predictions that can tell two decoders apart: long, varied strings."""
    return len(set(texts)) > len(texts) // 2 and min(len(t) for t in texts) >= 5


# ---------------------------------------------------------------------------------------
# Greedy predictions: batched == one at a time == pipeline()
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny_repo", "group_norm_repo"])
def test_batched_equals_unbatched_equals_pipeline(evaluation, clips, model, request):
    repo = request.getfixturevalue(model)
    expected = pipeline_texts(repo, clips)
    assert non_trivial(expected), expected
    assert transcriber(evaluation, repo, batch_size=1).transcribe(clips) == expected
    assert transcriber(evaluation, repo, batch_size=8).transcribe(clips) == expected


@pytest.mark.parametrize("model", ["tiny_repo", "group_norm_repo"])
def test_onnxruntime_backend_gives_torchs_transcripts(evaluation, clips, model, request):
    """The model exported at start-up and run by onnxruntime: every clip's text is torch's,
    clips longer than the export's example among them (dynamic batch and time)."""
    repo = request.getfixturevalue(model)
    expected = transcriber(evaluation, repo, batch_size=8).transcribe(clips)
    assert non_trivial(expected), expected
    onnx = transcriber(evaluation, repo, batch_size=8)
    onnx.use_backend("onnxruntime")
    assert type(onnx.engine).__name__ == "OnnxRuntimeModel"
    assert onnx.transcribe(clips) == expected


def test_vectorised_log_mel_gives_the_extractors_exact_features(evaluation, clips, tiny_repo):
    fast = transcriber(evaluation, tiny_repo, batch_size=1).feature_extractor
    own = AutoFeatureExtractor.from_pretrained(str(tiny_repo))
    assert "_extract_fbank_features" in vars(fast)  # the vectorised filterbank is in use
    for array in clips + [np.zeros(RATE, dtype=np.float32), clips[0][:400]]:
        assert np.array_equal(fast._extract_fbank_features(array), own._extract_fbank_features(array), equal_nan=True)
        assert np.array_equal(fast(array, sampling_rate=RATE)["input_features"],
                              own(array, sampling_rate=RATE)["input_features"], equal_nan=True)


def test_vectorised_log_mel_is_not_installed_where_it_would_differ(transcription, tiny_repo):
    extractor = AutoFeatureExtractor.from_pretrained(str(tiny_repo))
    # An extractor whose own filterbank the vectorised one does not reproduce.
    extractor._extract_fbank_features = lambda waveform: np.zeros((1, 80), dtype=np.float32)
    assert not transcription.install_fast_log_mel(extractor)
    assert transcription.install_fast_log_mel(AutoFeatureExtractor.from_pretrained(str(tiny_repo)))


def test_padding_would_change_the_group_norm_model(evaluation, clips, group_norm_repo):
    """Why such models batch only equal lengths: padded, their output changes."""
    padded = transcriber(evaluation, group_norm_repo, batch_size=8)
    assert not padded.pads_safely
    padded.pads_safely = True
    assert padded.transcribe(clips) != pipeline_texts(group_norm_repo, clips)


@pytest.mark.parametrize("pads_safely, lengths, expected", [
    (True, [3, 9, 5, 9, 1], [[1, 3, 2], [0, 4]]),
    (False, [3, 9, 5, 9, 1], [[1, 3], [2], [0], [4]]),
    (False, [4, 4, 4, 4, 2], [[0, 1, 2], [3], [4]]),
    (True, [], []),
])
def test_batches_are_length_sorted_and_equal_lengths_without_masks(evaluation, tiny_repo, pads_safely,
                                                                  lengths, expected):
    model = transcriber(evaluation, tiny_repo, batch_size=3)
    model.pads_safely = pads_safely
    assert model.batches(lengths) == expected


@pytest.mark.parametrize("model, chunk_length_s, stride_length_s", [
    ("tiny_repo", 2.0, 0.5),
    ("group_norm_repo", 3.0, None),  # the stride defaults to a sixth of the chunk
])
def test_chunked_long_clips_equal_the_pipelines_chunking(evaluation, clips, model, chunk_length_s,
                                                         stride_length_s, request):
    repo = request.getfixturevalue(model)
    long_clips = [np.concatenate(clips[0:3]), np.concatenate(clips[3:6]), clips[6]]
    expected = pipeline_texts(repo, long_clips, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s)
    assert non_trivial(expected)
    chunked = transcriber(evaluation, repo, batch_size=4)
    chunked.preprocessor.use_chunks(chunk_length_s, stride_length_s)
    assert max(map(len, long_clips)) > 3 * chunked.preprocessor.chunk_samples
    assert chunked.transcribe(long_clips) == expected


def test_windows_are_bounded_and_results_come_in_row_order(evaluation, transcription, release, tiny_repo, monkeypatch):
    dataset = evaluation.load_speech_dataset(str(release), LOCALE, "validated", sampling_rate=RATE).select(range(10))
    model = transcriber(evaluation, tiny_repo, batch_size=2)
    monkeypatch.setattr(evaluation, "WINDOW_BATCHES", 2)
    seen = []
    transcribe = model.transcribe_pieces
    monkeypatch.setattr(model, "transcribe_pieces", lambda clips: seen.append(len(clips)) or transcribe(clips))
    normalizer = evaluation.text_normalizer.load()
    result = evaluation.evaluate(dataset, "sentence", model, normalizer, num_workers=2)
    assert seen == [4, 4, 2]
    assert [row for row, _, _ in result.results] == list(range(len(dataset)))
    unbatched = transcriber(evaluation, tiny_repo, batch_size=1)
    arrays = [transcription.read_audio(dataset[row]["audio"], datasets.Audio(sampling_rate=RATE))
              for row in range(len(dataset))]
    assert [p for _, _, p in result.results] == [normalizer(t) for t in unbatched.transcribe(arrays)]


# ---------------------------------------------------------------------------------------
# The contract files
# ---------------------------------------------------------------------------------------


def test_local_common_voice_folder_writes_the_contract_files(tiny_repo, release):
    """Default --output_dir is the working directory, as in 2022."""
    result = run_eval(tiny_repo, "--dataset", release, "--config", LOCALE, "--split", "validated",
                      "--log_outputs", "--decoder", "greedy", "--batch_size", "4")
    written = {p.name for p in tiny_repo.iterdir() if re.search(r"eval_|^log_|^\.tmp", p.name)}
    name = "cv_hy-AM_validated"
    assert written == {f"{name}_eval_results.txt", f"{name}_eval_summary.json", f"log_{name}_predictions.txt",
                       f"log_{name}_targets.txt"}
    results = (tiny_repo / f"{name}_eval_results.txt").read_text(encoding="utf-8")
    assert re.fullmatch(r"WER: \d+(\.\d+)?(e-?\d+)?\nCER: \d+(\.\d+)?(e-?\d+)?", results)
    assert results in result.stdout
    predictions = read_log(tiny_repo / f"log_{name}_predictions.txt")
    targets = read_log(tiny_repo / f"log_{name}_targets.txt")
    summary = json.loads((tiny_repo / f"{name}_eval_summary.json").read_text(encoding="utf-8"))
    assert list(predictions) == list(targets) == list(range(summary["clips"]))
    assert non_trivial(list(predictions.values()))
    assert summary["decoder"] == "greedy" and summary["lm"] is None and summary["word_split"] == "space"
    assert summary["evaluated"] == summary["clips"] == summary["split_rows"] == 24 and summary["skipped"] == {}
    assert summary["complete"] is True
    assert summary["skipped_rows"] == [] and summary["audio_seconds"] > 24 and summary["seconds"] > 0
    assert f"evaluated 24 of 24 clips ({summary['audio_seconds']:.1f} s of audio" in result.stdout
    for written_file in written:
        (tiny_repo / written_file).unlink()


@pytest.fixture(scope="module")
def openslr(work, release):
    """An OpenSLR folder: line_index.tsv beside wavs/, made from the release's clips."""
    folder = work / "openslr"
    (folder / "wavs").mkdir(parents=True)
    lines = (release / LOCALE / "validated.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    index = []
    for number, line in enumerate(lines[1:]):
        fields = dict(zip(header, line.split("\t")))
        ffmpeg("-i", release / LOCALE / "clips" / fields["path"], "-ar", 22050, folder / "wavs" / f"c{number}.wav")
        index.append(f"c{number}\t{fields['sentence']}\n")
    (folder / "line_index.tsv").write_text("".join(index), encoding="utf-8")
    return folder


def test_openslr_folder_evaluates_and_logs_only_with_log_outputs_on_onnxruntime(work, tiny_repo, openslr, evaluation):
    output = work / "openslr-out"
    result = run_eval(tiny_repo, "--dataset", openslr, "--split", "test", "--output_dir", output, "--decoder",
                      "greedy", "--backend", "onnxruntime")
    assert "backend: onnxruntime" in result.stdout
    # No config: the dataset id is the folder's name and the split.
    assert sorted(p.name for p in output.iterdir()) == ["openslr_test_eval_results.txt",
                                                        "openslr_test_eval_summary.json"]
    summary = json.loads((output / "openslr_test_eval_summary.json").read_text(encoding="utf-8"))
    test_size = len(evaluation.load_speech_dataset(str(openslr), None, "test"))
    assert summary["evaluated"] == summary["clips"] == test_size == 3 and summary["backend"] == "onnxruntime"


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------

# (file name in clips/, reference, how eval.py should take it)
DIRTY_ROWS = [
    ("good.mp3", None, "evaluated"),
    ("corrupt.mp3", None, "unreadable audio"),
    ("zero_bytes.mp3", None, "empty audio file"),
    ("truncated.mp3", None, "truncated audio"),
    ("missing.mp3", None, "missing audio file"),
    ("stereo.wav", None, "evaluated"),
    ("rate_8k.wav", None, "evaluated"),
    ("rate_44k.wav", None, "evaluated"),
    ("good.mp3", "", "empty transcript"),
    ("good.mp3", "«…» ։ ?!", "transcript empty after normalisation"),
    ("too_short.wav", None, "audio too short for the model"),
    ("mono.wav", None, "evaluated"),
]


@pytest.fixture(scope="module")
def dirty_release(work, release):
    """The release with a split `dirty` whose rows are DIRTY_ROWS."""
    dirty = work / "dirty-cv"
    shutil.copytree(release, dirty)
    folder = dirty / LOCALE
    clips = folder / "clips"
    lines = (folder / "validated.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    first = dict(zip(header, lines[1].split("\t")))
    shutil.copy(clips / first["path"], clips / "good.mp3")
    (clips / "corrupt.mp3").write_bytes(np.random.default_rng(7).bytes(4096))
    (clips / "zero_bytes.mp3").write_bytes(b"")
    good = (clips / "good.mp3").read_bytes()
    (clips / "truncated.mp3").write_bytes(good[: len(good) // 2])
    ffmpeg("-i", clips / "good.mp3", "-ar", RATE, "-ac", 1, clips / "mono.wav")
    mono, rate = soundfile.read(clips / "mono.wav", dtype="int16")
    soundfile.write(clips / "stereo.wav", np.stack([mono, mono], axis=1), rate)  # both channels the mono clip
    ffmpeg("-i", clips / "good.mp3", "-ar", 8000, clips / "rate_8k.wav")
    ffmpeg("-i", clips / "good.mp3", "-ar", 44100, clips / "rate_44k.wav")
    soundfile.write(clips / "too_short.wav", np.zeros(200, dtype=np.float32), RATE)
    rows = ["\t".join(header)]
    for path, reference, _ in DIRTY_ROWS:
        row = {**first, "path": path, "sentence": first["sentence"] if reference is None else reference}
        rows.append("\t".join(row[column] for column in header))
    (folder / "dirty.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return dirty


@pytest.fixture(scope="module")
def dirty_run(work, tiny_repo, dirty_release):
    output = work / "dirty-out"
    result = run_eval(tiny_repo, "--dataset", dirty_release, "--config", LOCALE, "--split", "dirty",
                      "--output_dir", output, "--log_outputs", "--decoder", "greedy", "--num_workers", "2")
    summary = json.loads((output / "dirty-cv_hy-AM_dirty_eval_summary.json").read_text(encoding="utf-8"))
    return result, summary, read_log(output / "log_dirty-cv_hy-AM_dirty_predictions.txt")


@pytest.mark.parametrize("row", range(len(DIRTY_ROWS)), ids=[f"{p}-{how}" for p, _, how in DIRTY_ROWS])
def test_each_bad_input_is_skipped_with_its_reason_or_evaluated(dirty_run, row):
    _, summary, predictions = dirty_run
    how = DIRTY_ROWS[row][2]
    skipped = dict(summary["skipped_rows"])
    if how == "evaluated":
        assert row in predictions and row not in skipped
    else:
        assert skipped.get(row) == how and row not in predictions


def test_skips_are_counted_in_the_summary_json_and_line(dirty_run):
    result, summary, _ = dirty_run
    expected = {}
    for _, _, how in DIRTY_ROWS:
        if how != "evaluated":
            expected[how] = expected.get(how, 0) + 1
    assert summary["skipped"] == expected
    assert summary["clips"] == len(DIRTY_ROWS) and summary["evaluated"] == len(DIRTY_ROWS) - sum(expected.values())
    assert [row for row, _ in summary["skipped_rows"]] == sorted(row for row, _ in summary["skipped_rows"])
    # Found by what it says, not by where it is: eval.py may print more after it.
    summary_line = next((line for line in result.stdout.splitlines() if line.startswith("evaluated ")), "")
    assert summary_line.startswith(f"evaluated {summary['evaluated']} of {len(DIRTY_ROWS)} clips"), result.stdout
    for reason, count in expected.items():
        assert f"{count} {reason}" in summary_line


def test_stereo_and_other_rates_transcribe_like_the_mono_16k_clip(dirty_run, dirty_release):
    _, summary, predictions = dirty_run
    rows = {path: row for row, (path, _, how) in enumerate(DIRTY_ROWS) if how == "evaluated"}
    # Both channels hold the mono clip: their average is that clip, sample for sample.
    assert predictions[rows["stereo.wav"]] == predictions[rows["mono.wav"]]
    # Every evaluated row is the same speech, resampled to 16 kHz where it was 8 or 44.1 kHz.
    duration = soundfile.info(str(dirty_release / LOCALE / "clips" / "mono.wav")).duration
    assert summary["audio_seconds"] == pytest.approx(len(rows) * duration, rel=0.02)


def test_stereo_is_averaged_and_other_rates_resampled(transcription, tmp_path):
    seconds = np.arange(RATE) / RATE
    left, right = 0.5 * np.sin(2 * np.pi * 440 * seconds), 0.2 * np.sin(2 * np.pi * 300 * seconds)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), RATE)
    audio = datasets.Audio(sampling_rate=RATE)
    mono = transcription.read_audio({"path": str(tmp_path / "stereo.wav"), "bytes": None}, audio)
    assert mono.dtype == np.float32 and mono.shape == (RATE,)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-4)
    for rate in (8000, 44100):
        soundfile.write(tmp_path / f"{rate}.wav", np.sin(2 * np.pi * 440 * np.arange(rate) / rate), rate)
        resampled = transcription.read_audio({"path": str(tmp_path / f"{rate}.wav"), "bytes": None}, audio)
        assert abs(len(resampled) - RATE) <= 2


def test_too_short_is_the_first_length_with_no_output_frame(evaluation, tiny_repo, group_norm_repo):
    for repo, expected in ((tiny_repo, 560), (group_norm_repo, 400)):
        model = transcriber(evaluation, repo, batch_size=1)
        assert model.preprocessor.min_samples == expected
        assert model.output_frames(expected) == 1 and model.output_frames(expected - 1) == 0
        assert len(model.transcribe([np.zeros(expected, dtype=np.float32)])) == 1  # runs at the limit


def test_lm_tuning_log_probs_are_the_ones_eval_decodes(evaluation, tiny_repo, tmp_path):
    ctc_frames = evaluation.runtime.ctc_frames  # the repo's, which its eval.py imported
    # 16160 samples: the SeamlessM4T extractor stacks them into 50 rows, and masks the last
    # (it holds one real frame of a pair), so a mask sum counts 49 and loses a frame.
    samples = 16160
    model = transcriber(evaluation, tiny_repo, batch_size=8)
    features = model.feature_extractor(np.zeros(samples, dtype=np.float32), sampling_rate=RATE,
                                       return_attention_mask=True)
    assert len(features["input_features"][0]) == 50 and sum(features["attention_mask"][0]) == 49
    frames = ctc_frames.output_frames(model.model, [50])[0]
    assert frames != ctc_frames.output_frames(model.model, [49])[0]

    rng = np.random.default_rng(1)
    arrays = [rng.uniform(-0.3, 0.3, n).astype(np.float32) for n in (samples, 24000)]
    for index, array in enumerate(arrays):
        soundfile.write(tmp_path / f"{index}.wav", array, RATE, subtype="FLOAT")
    rows = datasets.Dataset.from_dict({
        "sentence": ["ես գիրք եմ կարդում", "գիրք"],
        "audio": [{"path": str(tmp_path / f"{i}.wav"), "bytes": None} for i in range(len(arrays))],
    })
    normalizer = evaluation.text_normalizer.load()
    dev = compute_dev_set(tiny_repo, rows, "sentence", normalizer, batch_size=8, log=print)

    assert len(dev.log_probs[0]) == frames
    for log_probs, logits in zip(dev.log_probs, model.clip_logits(arrays)):
        np.testing.assert_allclose(log_probs, torch.log_softmax(torch.from_numpy(logits), -1).numpy(), atol=1e-5)
    assert dev.greedy == [normalizer(text) for text in model.transcribe(arrays)]


# ---------------------------------------------------------------------------------------
# The n-gram LM
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_runs(work, lm_repo, release):
    """eval.py on the LM repo, once with --decoder auto (which finds the LM) and once greedy."""
    runs = {}
    for decoder in ("auto", "greedy"):
        output = work / f"lm-{decoder}"
        run_eval(lm_repo, "--dataset", release, "--config", LOCALE, "--split", "validated", "--output_dir", output,
                 "--log_outputs", "--decoder", decoder, "--num_workers", "2", "--max_samples", LM_CLIPS)
        summary = json.loads((output / "cv_hy-AM_validated_eval_summary.json").read_text(encoding="utf-8"))
        runs[decoder] = summary, read_log(output / "log_cv_hy-AM_validated_predictions.txt")
    return runs


def test_auto_decodes_with_the_lm_and_records_its_settings(lm_runs, lm_repo):
    (lm_summary, _), (greedy_summary, _) = lm_runs["auto"], lm_runs["greedy"]
    attrs = json.loads((lm_repo / "language_model" / "attrs.json").read_text(encoding="utf-8"))
    assert lm_summary["decoder"] == "lm" and greedy_summary["decoder"] == "greedy"
    assert lm_summary["lm"] == {"alpha": attrs["alpha"], "beta": attrs["beta"], "beam_width": 100,
                                 "engine": "ctc-beam-decoder"}
    assert greedy_summary["lm"] is None


def test_lm_predictions_equal_the_pipeline_with_the_lm(lm_runs, lm_repo, evaluation, transcription, release):
    """The pipeline decodes with the LM (pipe.type says so) and differs from greedy, so
    equal predictions mean eval.py searched with the LM, as the pipeline does."""
    dataset = evaluation.load_speech_dataset(str(release), LOCALE, "validated", sampling_rate=RATE)
    arrays = [transcription.read_audio(dataset[row]["audio"], datasets.Audio(sampling_rate=RATE))
              for row in range(LM_CLIPS)]
    asr = pipeline("automatic-speech-recognition", model=str(lm_repo), device=-1)
    assert asr.type == "ctc_with_lm"
    normalizer = evaluation.text_normalizer.load()
    with_lm = [normalizer(asr(array)["text"]) for array in arrays]
    (_, lm_predictions), (_, greedy_predictions) = lm_runs["auto"], lm_runs["greedy"]
    assert list(lm_predictions.values()) == with_lm
    assert list(greedy_predictions.values()) != with_lm


def test_pool_and_in_process_beam_search_agree(evaluation, lm_repo, clips):
    model = transcriber(evaluation, lm_repo, batch_size=8)
    decoder = evaluation.load_beam_decoder(str(lm_repo), model.tokenizer, model.model.config.vocab_size)
    texts = {}
    for processes in (0, 2):
        model.beam_search = evaluation.BeamSearch(decoder, processes)
        assert (model.beam_search.pool is None) == (processes == 0)
        try:
            texts[processes] = model.transcribe(clips[:LM_CLIPS])
        finally:
            model.beam_search.close()
    assert texts[0] == texts[2] and non_trivial(texts[0])


def test_decoder_lm_without_an_lm_is_an_error(tiny_repo, release):
    result = run_eval(tiny_repo, "--dataset", release, "--config", LOCALE, "--split", "test", "--decoder", "lm",
                      expect_success=False)
    assert result.returncode != 0 and "--decoder lm, but" in result.stderr
    assert not list(tiny_repo.glob("*eval_*"))


# ---------------------------------------------------------------------------------------
# Where the trained model is
# ---------------------------------------------------------------------------------------


@pytest.fixture
def untrained_repo(tiny_repo, tmp_path):
    """The tiny repo as stamped, before training: no weights."""
    return shutil.copytree(tiny_repo, tmp_path / "untrained",
                           ignore=shutil.ignore_patterns("model.safetensors", "*eval_*", "log_*"))


def one_error_line(result):
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("record", ["none", "output_dir without weights", "not JSON"])
def test_a_repo_without_weights_says_train_first_before_reading_any_data(untrained_repo, work, record):
    if record == "output_dir without weights":
        (untrained_repo / "out").mkdir()
        write_training_run(untrained_repo, untrained_repo / "out")
    elif record == "not JSON":
        (untrained_repo / "training_run.json").write_text("{", encoding="utf-8")
    # A dataset that does not exist: had it been opened first, its error would show instead.
    result = run_eval(untrained_repo, "--dataset", work / "no-such-dataset", "--split", "test",
                      expect_success=False)
    line = one_error_line(result)
    assert line.startswith("error: no trained weights in ./: train first with python run_speech_recognition_ctc.py")
    assert "no-such-dataset" not in result.stdout + result.stderr


def test_weights_cut_short_are_one_line_naming_the_file_before_any_data_is_read(untrained_repo, tiny_repo):
    weights = (tiny_repo / "model.safetensors").read_bytes()
    (untrained_repo / "model.safetensors").write_bytes(weights[: len(weights) // 2])  # a copy that stopped
    result = run_eval(untrained_repo, "--dataset", "no-such-dataset", "--config", LOCALE, "--split", "test",
                      expect_success=False)
    line = one_error_line(result)
    assert line.startswith("error: model.safetensors: cannot be read (") and "cut short" in line, line


def test_the_repo_trained_with_another_output_dir_evaluates_that_model(untrained_repo, tiny_repo, release):
    """`--model_id ./` means this repo's model, wherever its run saved it."""
    write_training_run(untrained_repo, tiny_repo)
    result = run_eval(untrained_repo, "--dataset", release, "--config", LOCALE, "--split", "test",
                      "--max_samples", "2", "--decoder", "greedy", "--num_workers", "0")
    assert f"no weights in ./; evaluating the trained model in {tiny_repo} (training_run.json)" in result.stderr
    assert (untrained_repo / "cv_hy-AM_test_eval_results.txt").is_file()


def test_another_folder_trained_elsewhere_is_named_not_followed(untrained_repo, tiny_repo, tmp_path, work):
    other = tmp_path / "other"
    other.mkdir()
    write_training_run(other, tiny_repo)
    result = run_eval(untrained_repo, "--dataset", work / "no-such-dataset", "--split", "test",
                      model_id=other, expect_success=False)
    assert one_error_line(result) == (f"error: the trained model is in {tiny_repo} (training_run.json); "
                                      f"run eval.py --model_id {tiny_repo}")


def test_a_model_path_that_does_not_exist_is_one_line(untrained_repo, work):
    result = run_eval(untrained_repo, "--dataset", work / "no-such-dataset", "--split", "test",
                      model_id="./no-such-model", expect_success=False)
    assert one_error_line(result) == "error: --model_id ./no-such-model: no such folder"


# ---------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------


def test_importing_eval_changes_no_environment(tiny_repo, monkeypatch):
    """eval.py limits BLAS threads only when run as a script."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = dict(os.environ)
    with repo_script_module(tiny_repo, "eval.py"):
        assert dict(os.environ) == before


# Imported by a run only where it uses them: the LM's Python decoder and KenLM binding, plots,
# Japanese word splitters.
NOT_AT_START = ("pyctcdecode", "kenlm", "matplotlib", "fugashi", "pykakasi")
IMPORTS = """
import sys
from repo_script import repo_script_module
script, lm_folder = sys.argv[1], sys.argv[2]
with repo_script_module(".", script) as module:
    if lm_folder:  # eval.py's LM path up to a loaded decoder
        decoder = module.load_beam_decoder(lm_folder, None, None)
        assert decoder.engine == "ctc-beam-decoder", decoder.engine
    print(" ".join(sorted(name for name in sys.modules if "." not in name)))
"""


@pytest.mark.parametrize("script, with_lm, also_absent", [
    ("eval.py", False, ("ctc_beam_decoder",)),
    ("eval.py", True, ()),
    ("run_speech_recognition_ctc.py", False, ("ctc_beam_decoder",)),
])
def test_a_run_starts_without_the_packages_it_does_not_use(tiny_repo, lm_repo, script, with_lm, also_absent):
    result = subprocess.run([sys.executable, "-c", IMPORTS, script, str(lm_repo) if with_lm else ""], cwd=tiny_repo,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)})
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(result.stdout.split())
    assert {"torch", "transformers"} <= loaded  # what every run needs did load
    assert loaded.isdisjoint(NOT_AT_START + also_absent), sorted(loaded & {*NOT_AT_START, *also_absent})


# ---------------------------------------------------------------------------------------
# Faults: one line, before the work, and the files on disk always of one run
# ---------------------------------------------------------------------------------------


def eval_args(release, split="validated", *extra):
    return ["--dataset", release, "--config", LOCALE, "--split", split, *extra]


def test_an_unwritable_output_dir_stops_before_the_model_is_loaded(tiny_repo, release, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    result = run_eval(tiny_repo, *eval_args(release), "--output_dir", blocker / "out", expect_success=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"error: --output_dir {blocker / 'out'} is not writable" in result.stderr
    assert "decoder:" not in result.stdout  # nothing was loaded


@pytest.mark.parametrize("extra, message", [
    (["--chunk_length_s", "0"], "--chunk_length_s must be more than 0 seconds"),
    (["--max_samples", "-1"], "--max_samples must be at least 1"),
    (["--max_samples", "0"], "--max_samples must be at least 1"),
])
def test_lengths_that_mean_nothing_are_refused_in_one_line(tiny_repo, release, extra, message):
    result = run_eval(tiny_repo, *eval_args(release), *extra, expect_success=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_vocabulary_one_label_short_of_the_model_is_refused_greedy_too(tiny_repo, release, tmp_path):
    """Greedy decoding would shift every letter after the missing one without a word."""
    repo = tmp_path / "short-vocab"
    shutil.copytree(tiny_repo, repo)
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    letter = next(token for token, _ in sorted(vocab.items(), key=lambda item: item[1]) if len(token) == 1
                  and token != "|")
    removed = vocab.pop(letter)
    vocab = {token: index - (index > removed) for token, index in vocab.items()}
    (repo / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    result = run_eval(repo, *eval_args(release), "--decoder", "greedy", "--max_samples", "2", expect_success=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "do not fit config.json's vocab_size" in result.stderr


def test_a_run_that_evaluates_nothing_leaves_the_last_runs_files_as_they_were(tiny_repo, release, tmp_path):
    out = tmp_path / "out"
    run_eval(tiny_repo, *eval_args(release), "--max_samples", "3", "--log_outputs", "--output_dir", out)
    name = f"cv_{LOCALE}_validated"
    summary = json.loads((out / f"{name}_eval_summary.json").read_text(encoding="utf-8"))
    results = (out / f"{name}_eval_results.txt").read_text(encoding="utf-8")
    assert results == f"WER: {summary['wer']}\nCER: {summary['cer']}"
    assert (summary["dataset"], summary["dataset_name"], summary["config"], summary["split"]) == (
        str(release), "cv", LOCALE, "validated")
    # Three rows of 24: figures that do not stand for the split, which the card keeps out of model-index.
    assert (summary["evaluated"], summary["split_rows"], summary["complete"]) == (3, 24, False)
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    gone = tmp_path / "copy" / "cv"  # the same dataset_id, its clips deleted
    shutil.copytree(release, gone)
    for clip in (gone / LOCALE / "clips").iterdir():
        clip.unlink()
    failed = run_eval(tiny_repo, *eval_args(gone), "--max_samples", "3", "--log_outputs", "--output_dir", out,
                      expect_success=False)
    assert failed.returncode != 0 and "no clip could be evaluated; no result file was written" in failed.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_ctrl_c_during_lm_decoding_stops_within_seconds_and_keeps_the_old_results(lm_repo, release, tmp_path):
    """SIGINT to the whole process group, as a terminal sends it, with LM workers running."""
    # The release's clips 25 times over, so that the run is still decoding when the signal
    # comes, however fast the machine and the beam search.
    long_release = tmp_path / "cv"
    (long_release / LOCALE).mkdir(parents=True)
    for path in (release / LOCALE).iterdir():
        if path.name != "validated.tsv":
            (long_release / LOCALE / path.name).symlink_to(path)
    header, *rows = (release / LOCALE / "validated.tsv").read_text(encoding="utf-8").splitlines()
    (long_release / LOCALE / "validated.tsv").write_text("\n".join([header, *rows * 25]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    old = out / f"cv_{LOCALE}_validated_eval_results.txt"
    old.write_text("WER: 0.5\nCER: 0.25")
    process = subprocess.Popen(
        [sys.executable, "eval.py", "--model_id", "./", *map(str, eval_args(long_release)), "--decoder", "lm",
         "--num_workers", "2", "--batch_size", "1", "--output_dir", str(out)],
        cwd=lm_repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As a shell started from a terminal runs it: a test run started in the background of
        # a script inherits SIGINT ignored, and so would eval.py.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in process.stdout:
            if line.startswith("decoder: n-gram LM"):
                break
        time.sleep(3)  # into the evaluation: audio workers and LM workers busy
        assert process.poll() is None, "the evaluation ended before it could be interrupted"
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("eval.py did not stop within 30 s of Ctrl-C")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    assert old.read_text() == "WER: 0.5\nCER: 0.25"


def edit_alphabet(repo, change):
    path = repo / "alphabet.json"
    alphabet = json.loads(path.read_text(encoding="utf-8"))
    letters = [index for index, label in enumerate(alphabet["labels"]) if len(label) == 1 and label != " "]
    change(alphabet["labels"], letters)
    path.write_text(json.dumps(alphabet, ensure_ascii=False), encoding="utf-8")


def swap_two_letters(labels, letters):
    labels[letters[0]], labels[letters[1]] = labels[letters[1]], labels[letters[0]]


def cut_in_half(path):
    os.truncate(path, path.stat().st_size // 2)


LM_FAULTS = {
    # the right number of labels, in another order or of an older vocab.json
    "swapped labels": (lambda repo: edit_alphabet(repo, swap_two_letters),
                       ["alphabet.json does not follow vocab.json (2 labels differ", "ctcforge lm"]),
    "stale label": (lambda repo: edit_alphabet(repo, lambda labels, letters: labels.__setitem__(letters[0], "x")),
                    ["alphabet.json does not follow vocab.json (1 labels differ", "'x' for", "ctcforge lm"]),
    "truncated lm.binary": (lambda repo: cut_in_half(repo / "language_model" / "lm.binary"),
                            ["language_model/lm.binary is damaged or cut short", "rebuild it with `ctcforge lm`"]),
    "extra file": (lambda repo: (repo / "language_model" / "notes.txt").write_text("mine"),
                   ["expected 3 files", "found 4", "extra: notes.txt", "remove what is extra", "ctcforge lm"]),
}


def lm_repo_with(fault, lm_repo, tmp_path):
    """A copy of the LM repo with one of LM_FAULTS, and the words its error must hold."""
    repo = shutil.copytree(lm_repo, tmp_path / "repo", ignore=shutil.ignore_patterns(".ctcforge-cache"))
    change, words = LM_FAULTS[fault]
    change(repo)
    return repo, words


@pytest.mark.parametrize("fault", list(LM_FAULTS))
def test_an_lm_that_does_not_fit_or_load_is_one_error_naming_the_fix(fault, lm_repo, tmp_path):
    """LM tuning and the demo's pipeline check load the LM through eval.py's loader."""
    from types import SimpleNamespace

    from ctcforge import demo
    from ctcforge.lm_folder import load_repo_decoder
    from ctcforge.runtime.errors import CtcforgeError

    repo, words = lm_repo_with(fault, lm_repo, tmp_path)
    for load in (load_repo_decoder, lambda repo: demo.log_pipeline_check(SimpleNamespace(repo=repo))):
        with pytest.raises(CtcforgeError) as error:
            load(repo)
        assert all(word in str(error.value) for word in words) and "\n" not in str(error.value)


def test_eval_stops_in_one_line_on_an_alphabet_of_other_labels(lm_repo, release, tmp_path):
    repo, words = lm_repo_with("swapped labels", lm_repo, tmp_path)
    result = run_eval(repo, *eval_args(release), "--decoder", "lm", "--max_samples", "1", "--output_dir",
                      tmp_path / "out", expect_success=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and "Traceback" not in result.stderr and len(errors) == 1, result.stderr[-2000:]
    assert all(word in errors[0] for word in words), errors[0]
    assert not list((tmp_path / "out").iterdir())
