"""MMS language adapters, on a tiny random MMS-shaped wav2vec2 (adapter layers of width 8)
saved as a local base: training changes only the adapter and output layer of its
language; a language the base has an adapter for starts from it; a repo trained for a
second language keeps both, and eval.py decodes either as pipeline(target_lang=...) does;
upstream's adapter command line runs."""

import json
import shutil
import sys

import datasets
import pytest
import torch
from conftest import (LOCALE, XLSR_STYLE, build_training_text_lm, card_python, needs_speech, read_log, run_script,
                      save_waveform_extractor, succeeded, synthesised_release)
from repo_script import repo_script_module
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2Config, Wav2Vec2ForCTC, pipeline

from ctcforge.new import new_repo

pytestmark = needs_speech

RATE = 16000
ADAPTER_DIM = 8
# Upstream's README command line for run_speech_recognition_ctc_adapter.py (Common Voice
# Turkish), with only the dataset changed; --push_to_hub left out (no Hub here), fewer
# steps, and a learning rate that moves the weights visibly in 2 steps.
UPSTREAM_ADAPTER = ["--num_train_epochs", "4", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
                    "--warmup_steps", "100", "--eval_strategy", "steps", "--text_column_name", "sentence",
                    "--length_column_name", "input_length", "--save_steps", "200", "--eval_steps", "100",
                    "--save_total_limit", "3", "--gradient_checkpointing", "--chars_to_ignore", ",", "?",
                    ".", "!", "-", ";", ":", '"', "“", "%", "‘", "”", "�", "--fp16", "--group_by_length",
                    "--do_train", "--max_steps", "2", "--adapter_attn_dim", str(ADAPTER_DIM)]


def is_adapter_tensor(name):
    return ".adapter_layer." in name or name.startswith("lm_head.")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="module")
def release(work):
    return synthesised_release(work / "cv" / "cv", 16, seed=3)


@pytest.fixture(scope="module")
def mms_base(work):
    """A fine-tuned multilingual base as MMS ships it: weights with adapter layers, and an
    adapter file for one language (hye) whose head is for its own 12 labels."""
    base = work / "mms-base"
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**XLSR_STYLE, adapter_attn_dim=ADAPTER_DIM, vocab_size=12))
    model.save_pretrained(base)
    save_waveform_extractor(base)
    hye = {name: torch.randn_like(tensor) for name, tensor in model.state_dict().items() if is_adapter_tensor(name)}
    save_file(hye, str(base / "adapter.hye.safetensors"), metadata={"format": "pt"})
    return base


@pytest.fixture(scope="module")
def trained(work, mms_base, release):
    """A repo stamped from the base, trained for hye with upstream's adapter command line,
    then for hyw (Western Armenian, on the same clips, so with the same labels)."""
    repo = new_repo(LOCALE, work / "repo", base_model=str(mms_base), dataset=str(release))
    logs = {}
    for language, extra in (("hye", UPSTREAM_ADAPTER), ("hyw", ["--do_train", "--max_steps", "2",
                                                                "--learning_rate", "1e-2", "--use_cpu"])):
        # hye's final checkpoint is in ./ when hyw starts: it must not be resumed.
        result = succeeded(run_script(repo, "--model_name_or_path", "./", "--dataset_name", str(release),
                                      "--dataset_config_name", LOCALE, "--output_dir", "./", "--target_language",
                                      language, "--report_to", "none", "--dataloader_num_workers", "0",
                                      "--disable_tqdm", "true", *extra))
        logs[language] = result.stdout + result.stderr
        shutil.copy(repo / "adapter.hye.safetensors", work / f"hye-after-{language}.safetensors")
    assert (repo / "checkpoint-2" / "adapter.hyw.safetensors").is_file()
    assert "Not resuming checkpoint-2: it holds hye, not adapter.hyw.safetensors" in logs["hyw"]
    return repo, logs


def test_training_changes_only_the_adapters_and_the_head(trained, mms_base):
    repo, logs = trained
    base, final = load_file(mms_base / "model.safetensors"), load_file(repo / "model.safetensors")
    assert set(base) == set(final)
    changed = {name for name in base if base[name].shape != final[name].shape or not torch.equal(base[name], final[name])}
    adapter_names = {name for name in base if is_adapter_tensor(name)}
    assert len(adapter_names) == 2 * 6 + 2  # six tensors per encoder layer, and the head
    assert changed == adapter_names
    # The first language's adapter stayed as its own run left it while the second trained.
    assert torch.equal(load_file(repo.parent / "hye-after-hye.safetensors")["lm_head.weight"],
                       load_file(repo.parent / "hye-after-hyw.safetensors")["lm_head.weight"])
    assert "Adapter fine-tuning for hye: training" in logs["hye"]
    assert "--fp16 needs a CUDA GPU" in logs["hye"]  # upstream's GPU command line, on this CPU


def test_adapter_file_is_the_languages_share_of_the_model(trained):
    repo, _ = trained
    adapter = load_file(repo / "adapter.hye.safetensors")
    model = load_file(repo / "model.safetensors")
    assert set(adapter) == {name for name in model if is_adapter_tensor(name)}
    record = json.loads((repo / "training_run.json").read_text(encoding="utf-8"))["adapter"]
    assert record["language"] == "hyw" and record["file"] == "adapter.hyw.safetensors"
    assert record["parameters"] == sum(tensor.numel() for tensor in adapter.values())
    assert record["model_parameters"] == sum(tensor.numel() for tensor in model.values())
    size = (repo / "adapter.hyw.safetensors").stat().st_size
    assert record["bytes"] == size
    # 2,519 of this tiny model's 35,719 parameters (7%); for mms-1b-all, 2.2M of 965M (0.23%).
    assert size < 0.1 * (repo / "model.safetensors").stat().st_size


@pytest.mark.parametrize("language, starts_from_base", [("hye", True), ("hyw", False)])
def test_a_language_the_base_covers_starts_from_its_adapter(trained, mms_base, language, starts_from_base):
    """Only the adapter layers come from the base's file: its head is for other labels."""
    repo, _ = trained
    config = AutoConfig.from_pretrained(repo)
    model = AutoModelForCTC.from_pretrained(mms_base, config=config, ignore_mismatched_sizes=True)
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    with repo_script_module(repo, "eval.py") as evaluation:
        adapters = evaluation.runtime.adapters
        described = adapters.prepare_adapter_training(model, language, [str(mms_base)], vocab)
    stored = load_file(mms_base / "adapter.hye.safetensors")
    state = model.state_dict()
    layers = [name for name in stored if ".adapter_layer." in name]
    assert all(torch.equal(state[name], stored[name]) for name in layers) == starts_from_base
    assert (str(mms_base) in described) == starts_from_base
    if not starts_from_base:  # initialised afresh, as transformers initialises adapters
        assert all(torch.equal(state[name], torch.ones_like(state[name])) for name in layers if "norm.weight" in name)
        assert not any(torch.equal(state[name], load_file(mms_base / "model.safetensors")[name])
                       for name in layers if "linear" in name and name.endswith("weight"))
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable == {name for name in state if is_adapter_tensor(name)}


def test_both_languages_load_with_their_own_adapter(trained):
    repo, _ = trained
    for language in ("hye", "hyw"):
        model = AutoModelForCTC.from_pretrained(repo, target_lang=language)
        stored = load_file(repo / f"adapter.{language}.safetensors")
        state = model.state_dict()
        assert all(torch.equal(state[name], tensor) for name, tensor in stored.items()), language
    hye, hyw = (load_file(repo / f"adapter.{language}.safetensors") for language in ("hye", "hyw"))
    assert not torch.equal(hye["lm_head.weight"], hyw["lm_head.weight"])


CLIPS = 6
LM_CLIPS = 3


@pytest.fixture(scope="module")
def evaluation(trained):
    with repo_script_module(trained[0], "eval.py") as module:
        yield module


@pytest.fixture(scope="module")
def clips(evaluation, release):
    dataset = evaluation.load_speech_dataset(str(release), LOCALE, "validated", sampling_rate=RATE)
    transcription = evaluation.runtime.transcription
    return [transcription.read_audio(dataset[row]["audio"], datasets.Audio(sampling_rate=RATE))
            for row in range(CLIPS)]


@pytest.fixture(scope="module")
def lm_repo(work, trained, release):
    """The trained repo with a 3-gram from its training text, built by `ctcforge lm`, and
    its hye output layer scaled up so that frames are peaked, as a trained model's are
    (two steps leave them flat, and beam search over flat frames is slow)."""
    repo = work / "repo-lm"
    shutil.copytree(trained[0], repo)
    adapter = load_file(repo / "adapter.hye.safetensors")
    adapter["lm_head.weight"] *= 30.0
    save_file(adapter, str(repo / "adapter.hye.safetensors"), metadata=safe_metadata(trained[0] / "adapter.hye.safetensors"))
    build_training_text_lm(repo, release)
    return repo


def safe_metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return file.metadata()


def pipeline_texts(repo, clips, language, expected_type):
    """As the README says to load an adapter repo: pipeline() hands model_kwargs to the
    tokenizer too, whose target_lang would need MMS's nested vocab.json; the tokenizer given
    as (folder, kwargs) is loaded without them (adapters.pipeline_arguments says so too)."""
    with repo_script_module(repo, "eval.py") as evaluation:
        assert evaluation.runtime.adapters.pipeline_arguments(str(repo), language) == {
            "tokenizer": (str(repo), {}), "model_kwargs": {"target_lang": language}}
    asr = pipeline("automatic-speech-recognition", model=str(repo), tokenizer=(str(repo), {}), device=-1,
                   model_kwargs={"target_lang": language})
    assert asr.type == expected_type
    return [asr(clip.copy())["text"] for clip in clips]


def test_eval_decodes_each_adapter_as_the_pipeline_does(trained, evaluation, clips):
    repo, _ = trained
    by_language = {}
    for language in ("hye", "hyw"):
        by_language[language] = evaluation.Transcriber(str(repo), torch.device("cpu"), 4, language).transcribe(clips)
        assert by_language[language] == pipeline_texts(repo, clips, language, "ctc"), language
    assert by_language["hye"] != by_language["hyw"]
    assert min(len(text) for text in by_language["hye"]) >= 5


def test_eval_decodes_the_adapter_with_the_lm_as_the_pipeline_does(lm_repo, evaluation, clips):
    transcriber = evaluation.Transcriber(str(lm_repo), torch.device("cpu"), 4, "hye")
    greedy = transcriber.transcribe(clips[:LM_CLIPS])
    decoder = evaluation.load_beam_decoder(str(lm_repo), transcriber.tokenizer, transcriber.model.config.vocab_size)
    transcriber.beam_search = evaluation.BeamSearch(decoder, 0)
    with_lm = transcriber.transcribe(clips[:LM_CLIPS])
    assert with_lm == pipeline_texts(lm_repo, clips[:LM_CLIPS], "hye", "ctc_with_lm")
    assert with_lm != greedy


def test_the_cards_pipeline_snippet_loads_the_repos_adapter(lm_repo, clips, tmp_path, monkeypatch, capsys):
    import soundfile

    from ctcforge.card import rebuild_card

    repo = shutil.copytree(lm_repo, tmp_path / "repo")
    rebuild_card(repo)
    code = card_python(repo)
    assert '"target_lang": "hye"' in code
    soundfile.write(repo / "clip.wav", clips[0], RATE, subtype="FLOAT")  # read back sample for sample
    monkeypatch.chdir(repo)  # the snippet names the repo as "./"
    names = {}
    exec(compile(code, "README.md", "exec"), names)
    assert names["asr"].type == "ctc_with_lm" and names["greedy"].type == "ctc"
    assert capsys.readouterr().out.splitlines() == [
        *pipeline_texts(repo, clips[:1], "hye", "ctc_with_lm"), names["greedy"](clips[0].copy())["text"]]


def test_eval_script_uses_the_repos_language_by_default(trained, evaluation, clips, release, work, monkeypatch,
                                                        capsys):
    """eval.py's main(), in this process (its command line as the README runs it)."""
    repo, _ = trained
    output = work / "eval-default"
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["eval.py", "--model_id", "./", "--dataset", str(release), "--config", LOCALE,
                                      "--split", "validated", "--max_samples", str(CLIPS), "--decoder", "greedy",
                                      "--log_outputs", "--num_workers", "0", "--output_dir", str(output)])
    evaluation.main()
    assert "language adapter: hye" in capsys.readouterr().out
    normalizer = evaluation.text_normalizer.load()
    hye = evaluation.Transcriber(str(repo), torch.device("cpu"), 4, "hye").transcribe(clips)
    predictions = read_log(output / "log_cv_hy-AM_validated_predictions.txt")
    assert list(predictions.values()) == [normalizer(text) for text in hye]


@pytest.mark.parametrize("options, full_weights_go", [([], True), (["--adapter-only"], False)])
def test_push_uploads_the_adapters_and_by_default_the_full_weights(trained, capsys, options, full_weights_go):
    from ctcforge.cli import main

    repo, _ = trained
    assert main(["push", str(repo), "--repo-id", "someone/hy-mms", "--dry-run", *options]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split("  ")[-1] for line in lines if line.startswith(" ")}
    assert {"adapter.hye.safetensors", "adapter.hyw.safetensors", "config.json", "vocab.json"} <= listed
    assert ("model.safetensors" in listed) == full_weights_go
    assert ("left out: 1 file: the full model weights (--adapter-only)" in lines) != full_weights_go


def test_card_says_adapter_fine_tune_with_its_size_and_base(trained, mms_base, tmp_path):
    from ctcforge.card import rebuild_card

    untrained = new_repo("km", tmp_path / "km", base_model="facebook/mms-1b-all")
    assert AutoConfig.from_pretrained(untrained).adapter_attn_dim == 16
    card = (untrained / "README.md").read_text(encoding="utf-8")
    assert "An adapter fine-tune" in card and "`adapter.khm.safetensors`" in card
    repo, _ = trained
    card = rebuild_card(repo).read_text(encoding="utf-8")
    record = json.loads((repo / "training_run.json").read_text(encoding="utf-8"))["adapter"]
    assert (f"An adapter fine-tune: only the `hyw` language adapter layers and the output layer were trained, "
            f"{record['parameters']:,} of the model's {record['model_parameters']:,} parameters") in card
    assert f"`adapter.hyw.safetensors` ({record['bytes'] / 1e6:.1f} MB)" in card
    # The local base named by its folder, never by this machine's path to it.
    assert f"`PATH/TO/{mms_base.name}`" in card and str(mms_base) not in card


def test_every_profile_names_its_iso_639_3_code():
    from ctcforge.languages import available_codes, load_profile

    codes = {code: load_profile(code).iso639_3 for code in available_codes()}
    assert all(isinstance(iso, str) and len(iso) == 3 and iso.isalpha() for iso in codes.values()), codes
    assert len(set(codes.values())) == len(codes)
    assert (codes["hy-AM"], codes["km"], codes["as"], codes["ja"], codes["zh-HK"]) == ("hye", "khm", "asm", "jpn", "yue")


def test_export_writes_the_repos_language_not_the_last_one_trained(trained, tmp_path):
    """The repo trained hye, then hyw: its model.safetensors holds hyw's adapter, and
    eval.py scores hye, the repo's language. The export is of what eval.py scores."""
    import numpy as np
    import onnxruntime

    from ctcforge.export import export_repo

    repo = shutil.copytree(trained[0], tmp_path / "repo")
    export_repo(repo, log=lambda message: None)
    settings = json.loads((repo / "onnx" / "export.json").read_text(encoding="utf-8"))
    assert settings["language"] == "hye"
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, (1, RATE)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(repo / "onnx" / "model.onnx"))
    exported = session.run(["logits"], {"waveform": waveform})[0]

    def logits(language):
        from transformers import AutoFeatureExtractor

        model = AutoModelForCTC.from_pretrained(repo, target_lang=language).eval()
        inputs = AutoFeatureExtractor.from_pretrained(repo)(waveform[0], sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            return model(**inputs).logits.numpy()

    hye, hyw = logits("hye"), logits("hyw")
    assert not np.allclose(hye, hyw, atol=1e-3)  # two adapters that tell apart
    assert np.allclose(exported, hye, atol=1e-3) and not np.allclose(exported, hyw, atol=1e-3)
