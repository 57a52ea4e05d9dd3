"""A stamped repo's own scripts, end to end on synthesised speech: its training script and
eval.py share the repo normaliser, and `ctcforge card` turns what they leave into the card."""

import json
import re
import shutil

import pytest
from conftest import card_python, needs_speech, pipeline_texts, read_tsv, run_eval, run_script, succeeded, synthesised_release
from huggingface_hub import ModelCard

from ctcforge.card import rebuild_card
from ctcforge.languages import load_profile
from ctcforge.new import new_repo

pytestmark = needs_speech


def sentences(release, split):
    return [row["sentence"] for row in read_tsv(release / f"{split}.tsv")[1]]


@pytest.fixture(scope="module")
def trained_repo(tmp_path_factory):
    """A repo trained 8 steps on 40 synthesised clips and evaluated greedily; and its hy-AM folder."""
    work = tmp_path_factory.mktemp("pipeline")
    cv = synthesised_release(work / "cv", 40, seed=1)
    repo = new_repo("hy-AM", work / "repo", base_model="tiny", dataset=str(cv))
    succeeded(run_script(repo, "--model_name_or_path", "./", "--dataset_name", cv, "--dataset_config_name", "hy-AM",
                         "--train_split_name", "train", "--eval_split_name", "dev", "--output_dir", "./",
                         "--max_steps", "8", "--per_device_train_batch_size", "8", "--learning_rate", "2e-3",
                         "--do_train", "--do_eval", "--use_cpu", "--report_to", "none", "--eval_strategy", "steps",
                         "--eval_steps", "4", "--logging_steps", "2", "--save_steps", "4"))
    run_eval(repo, "--dataset", cv, "--config", "hy-AM", "--split", "test", "--log_outputs", "--decoder", "greedy",
             "--output_dir", "eval/greedy")
    return repo, cv / "hy-AM"


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
    # Trained and evaluated on a `ctcforge synth` release: said in the results and the prose.
    assert names[("Test WER", "synthetic (espeak-ng) cv hy-AM (test)")] == wer
    assert "Training data: synthetic hy-AM speech spoken by espeak-ng" in card.text
    assert card.data.datasets is None
    # The command really run named this machine's release folder; the card names where
    # `ctcforge synth` writes it again, and no folder of this machine.
    assert "--dataset_name data/cv" in card.text and "ctcforge synth hy-AM --output-dir data/cv --num-clips 40" in card.text
    assert str(repo.parent) not in card.text
    assert "### Training results" in card.text and "| 8 |" in card.text
    assert "- training_steps: 8" in card.text and "- learning_rate: 0.002" in card.text


# ---------------------------------------------------------------------------- ONNX export


def split_clips(release):
    """The test split's clips, decoded as eval.py decodes them."""
    from ctcforge.runtime.speech_data import decode_audio, load_speech_dataset

    rows = load_speech_dataset(str(release.parent), release.name, "test", sampling_rate=16000)
    return [decode_audio(row["audio"], 16000).samples for row in rows]


def sherpa_texts(repo, clips):
    import sherpa_onnx

    recognizer = sherpa_onnx.OfflineRecognizer.from_omnilingual_asr_ctc(
        model=str(repo / "onnx" / "model.onnx"), tokens=str(repo / "onnx" / "tokens.txt"), num_threads=1)
    texts = []
    for clip in clips:
        stream = recognizer.create_stream()
        stream.accept_waveform(16000, clip)
        recognizer.decode_stream(stream)
        texts.append(stream.result.text)
    return texts


def test_export_runs_in_sherpa_onnx_with_the_pipelines_text_and_goes_into_card_and_push(trained_repo, capsys):
    from ctcforge.cli import main
    from ctcforge.export import LOGIT_TOLERANCE
    from ctcforge.push import files_to_upload

    repo, release = trained_repo
    assert main(["export", str(repo), "--int8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    settings = json.loads((repo / "onnx" / "export.json").read_text(encoding="utf-8"))
    assert settings["largest_logit_difference"] <= LOGIT_TOLERANCE
    assert any(line.startswith("checked on 4 clips and a batch of 2") for line in lines), lines  # the test split
    assert any(line.startswith("int8: CER ") and "on 4 test clips" in line for line in lines), lines
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    tokens = dict(line.split(" ") for line in (repo / "onnx" / "tokens.txt").read_text(encoding="utf-8").splitlines())
    assert tokens["<blk>"] == str(vocab["[PAD]"]) == str(settings["blank_id"])
    assert tokens["\u2581"] == str(vocab["|"]) == str(settings["word_delimiter_id"])
    assert len(tokens) == len(vocab) and "|" not in tokens and "[PAD]" not in tokens
    clips = split_clips(release)
    assert sherpa_texts(repo, clips) == pipeline_texts(repo, clips)

    card = (repo / "README.md").read_text(encoding="utf-8")  # rebuilt by the command
    assert "### ONNX" in card and "from_omnilingual_asr_ctc" in card and "model.int8.onnx" in card
    uploaded = {path.as_posix() for path in files_to_upload(repo)}
    assert {"onnx/model.onnx", "onnx/model.int8.onnx", "onnx/tokens.txt", "onnx/export.json"} <= uploaded


def test_export_of_a_model_that_writes_text_gives_the_pipelines_text_in_sherpa_onnx(trained_repo, tmp_path,
                                                                                    monkeypatch):
    """Eight training steps leave the model writing blanks; random weights write letters,
    spaces and [UNK] on every frame, near ties and all, so every label's id and the graph's
    features are put to the test. A little noise keeps the clips free of exact digital
    silence, on which sherpa-onnx's own scaling of the clip changes log-mel features.
    First, an export outside the tolerance is refused and leaves nothing behind."""
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForCTC

    from ctcforge import export as onnx_export
    from ctcforge.runtime.errors import CtcforgeError

    source, release = trained_repo
    repo = shutil.copytree(source, tmp_path / "repo", ignore=shutil.ignore_patterns("checkpoint-*", "onnx"))
    torch.manual_seed(0)
    AutoModelForCTC.from_config(AutoConfig.from_pretrained(repo)).save_pretrained(repo)
    with monkeypatch.context() as patch:
        patch.setattr(onnx_export, "LOGIT_TOLERANCE", 0.0)  # float32 in another order is never exact
        with pytest.raises(CtcforgeError, match="logits differ from torch's by .* nothing was written"):
            onnx_export.export_repo(repo, log=lambda line: None)
    assert not (repo / "onnx").exists() and not list((repo / ".ctcforge-cache").iterdir())

    onnx_export.export_repo(repo, log=lambda line: None)
    noise = np.random.default_rng(0)
    clips = [clip + noise.normal(0, 1e-4, len(clip)).astype(np.float32) for clip in split_clips(release)]
    expected = pipeline_texts(repo, clips)
    assert all(text.strip() for text in expected) and any(" " in text.strip() for text in expected), expected
    assert sherpa_texts(repo, clips) == expected


# ---------------------------------------------------------------------------- the card's usage


def test_the_cards_pipeline_snippet_runs_with_and_without_the_lm(trained_repo, tmp_path, monkeypatch, capsys):
    import soundfile
    from conftest import build_training_text_lm

    from ctcforge.runtime.speech_data import decode_audio

    source, release = trained_repo
    repo = shutil.copytree(source, tmp_path / "repo")
    rebuild_card(repo)
    assert "n-gram LM" not in card_python(repo)  # no LM yet: one pipeline, no greedy twin
    build_training_text_lm(repo, release.parent)
    rebuild_card(repo)
    code = card_python(repo)
    first = read_tsv(release / "test.tsv")[1][0]
    audio = decode_audio({"path": str(release / "clips" / first["path"]), "bytes": None}, 16000).samples
    soundfile.write(repo / "clip.wav", audio, 16000, subtype="FLOAT")  # read back sample for sample

    monkeypatch.chdir(repo)  # the snippet names the repo as "./"
    names = {}
    exec(compile(code, "README.md", "exec"), names)
    printed = capsys.readouterr().out.splitlines()
    assert names["asr"].type == "ctc_with_lm" and names["greedy"].type == "ctc"
    assert printed == pipeline_texts(repo, [audio]) + [names["greedy"](audio)["text"]]
