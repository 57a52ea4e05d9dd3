"""Fine-tuning pretrained checkpoints from a stamped repo: `--model_name_or_path ./` starts
from the base model `ctcforge new --base-model` was given, for every family; encoder
tensors reach the trained model unchanged under a zero learning rate; what cannot be loaded
stops the run in one line before any data is prepared; upstream's README command line runs."""

import json

import pytest
import torch
from conftest import BASE_STYLE, XLSR_STYLE, needs_speech, run_script, save_waveform_extractor, succeeded
from repo_script import SCRIPT
from safetensors.torch import load_file
from transformers import (SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel, Wav2Vec2Config,
                          Wav2Vec2ForPreTraining, Wav2Vec2Model)

from ctcforge.new import new_repo
from ctcforge.runtime.errors import CtcforgeError

pytestmark = needs_speech

# The wav2vec2 shapes (XLSR_STYLE, BASE_STYLE) are conftest's; w2v-BERT 2.0's is here.
W2V_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                feature_projection_input_dim=160, conv_depthwise_kernel_size=5,
                position_embeddings_type="rotary")


def save_checkpoint(kind, folder):
    """A pretrained checkpoint of `kind` as save_pretrained writes it, with its extractor.
    Returns the prefix its encoder tensors get inside the CTC model."""
    torch.manual_seed(0)
    if kind == "wav2vec2-pretraining":
        Wav2Vec2ForPreTraining(Wav2Vec2Config(**XLSR_STYLE)).save_pretrained(folder)
        prefix = ""  # already under wav2vec2.
    elif kind == "wav2vec2-model":
        Wav2Vec2Model(Wav2Vec2Config(**BASE_STYLE)).save_pretrained(folder)
        prefix = "wav2vec2."
    else:
        Wav2Vec2BertModel(Wav2Vec2BertConfig(**W2V_BERT)).save_pretrained(folder)
        prefix = "wav2vec2_bert."
    if kind != "wav2vec2-bert":
        save_waveform_extractor(folder)
    else:
        SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, sampling_rate=16000, stride=2,
                                    padding_value=1, return_attention_mask=True).save_pretrained(folder)
    return prefix


def data_args(release):
    return ["--dataset_name", str(release), "--dataset_config_name", "hy-AM",
            "--report_to", "none", "--dataloader_num_workers", "0", "--disable_tqdm", "true"]


def zero_rate_run(repo, release, *extra):
    result = succeeded(run_script(repo, "--model_name_or_path", "./", "--output_dir", "./", *data_args(release),
                                  "--do_train", "--max_steps", "2", "--per_device_train_batch_size", "4",
                                  "--learning_rate", "0", "--use_cpu", *extra))
    return result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["wav2vec2-pretraining", "wav2vec2-model", "wav2vec2-bert"])
def test_repo_fine_tunes_its_local_base_model(kind, cv_release, tmp_path):
    base = tmp_path / "base"
    prefix = save_checkpoint(kind, base)
    repo = new_repo("hy-AM", tmp_path / "repo", base_model=str(base), dataset=str(cv_release))
    record = json.loads((repo / "base_model.json").read_text(encoding="utf-8"))
    assert record["source"] == "local" and record["path"] == str(base.resolve())

    log = zero_rate_run(repo, cv_release)

    checkpoint = load_file(base / "model.safetensors")
    trained = load_file(repo / "model.safetensors")
    encoder = {prefix + name: tensor for name, tensor in checkpoint.items()
               if not name.startswith(("quantizer.", "project_"))}
    assert len(encoder) > 20
    assert sum(1 for t in encoder.values() if t.numel() > 1 and t.std() > 0) > 10  # not all constant
    unequal = [name for name, tensor in encoder.items()
               if name not in trained or not torch.equal(trained[name], tensor)]
    assert unequal == []
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    assert trained["lm_head.weight"].shape[0] == len(vocab)
    assert "new, randomly initialised: 2 (lm_head.bias, lm_head.weight)" in log
    if kind == "wav2vec2-pretraining":
        assert "in the checkpoint but unused" in log and "quantizer." in log
    run = json.loads((repo / "training_run.json").read_text(encoding="utf-8"))
    assert run["started_from"] == str(base.resolve()) and run["steps"] == 2
    assert run["command"].startswith(f"python {SCRIPT} --model_name_or_path ./")


def save_ctc_base(folder, letters):
    """A fine-tuned CTC checkpoint, as a 2022 repo holds one: its head over `letters` in its
    own order, its special tokens spelt its own way (<pad>, <unk>), two letters of its own."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC

    folder.mkdir()
    tokens = ["<pad>", "<unk>", "|", "x", "y", *reversed(letters)]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), pad_token="<pad>", unk_token="<unk>", word_delimiter_token="|",
                         bos_token=None, eos_token=None).save_pretrained(folder)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(Wav2Vec2Config(**XLSR_STYLE, vocab_size=len(tokens), pad_token_id=0)).save_pretrained(folder)
    save_waveform_extractor(folder)
    return {t: i for i, t in enumerate(tokens)}


@pytest.mark.parametrize("missing", [0, 1])
def test_a_ctc_base_keeps_the_head_row_of_every_label_it_knew(missing, cv_release, tmp_path):
    """Matched by label, not id (the base's order and special-token names differ from the
    repo's); a letter the base never wrote gets a fresh row, not another letter's."""
    probe = new_repo("hy-AM", tmp_path / "probe", base_model="tiny", dataset=str(cv_release))
    letters = [t for t in json.loads((probe / "vocab.json").read_text(encoding="utf-8")) if t not in ("[PAD]", "[UNK]", "|")]
    unknown_to_base = letters[:missing]
    base_ids = save_ctc_base(tmp_path / "base", letters[missing:])
    repo = new_repo("hy-AM", tmp_path / "repo", base_model=str(tmp_path / "base"), dataset=str(cv_release))

    log = zero_rate_run(repo, cv_release)

    base = load_file(tmp_path / "base" / "model.safetensors")
    trained = load_file(repo / "model.safetensors")
    vocab = json.loads((repo / "vocab.json").read_text(encoding="utf-8"))
    spelt_by_base = {"[PAD]": "<pad>", "[UNK]": "<unk>"}
    for token, index in vocab.items():
        row = trained["lm_head.weight"][index]
        if token in unknown_to_base:
            assert not any(torch.equal(row, base_row) for base_row in base["lm_head.weight"]), token
        else:
            base_index = base_ids[spelt_by_base.get(token, token)]
            assert torch.equal(row, base["lm_head.weight"][base_index]), token
            assert torch.equal(trained["lm_head.bias"][index], base["lm_head.bias"][base_index]), token
    assert f"CTC head: {len(vocab) - missing} of {len(vocab)} labels keep the rows" in log


def test_feature_encoder_is_frozen_for_wav2vec2(cv_release, tmp_path):
    """With a real learning rate the transformer moves but the convolutions do not
    (upstream's --freeze_feature_encoder, on by default)."""
    base = tmp_path / "base"
    save_checkpoint("wav2vec2-pretraining", base)
    repo = new_repo("hy-AM", tmp_path / "repo", base_model=str(base), dataset=str(cv_release))
    zero_rate_run(repo, cv_release, "--learning_rate", "1e-2")
    checkpoint, trained = load_file(base / "model.safetensors"), load_file(repo / "model.safetensors")
    convolutions = [n for n in checkpoint if n.startswith("wav2vec2.feature_extractor.")]
    assert convolutions and all(torch.equal(trained[n], checkpoint[n]) for n in convolutions)
    layer = "wav2vec2.encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(trained[layer], checkpoint[layer])


def test_trained_repo_continues_from_its_own_weights(cv_release, tmp_path):
    base = tmp_path / "base"
    save_checkpoint("wav2vec2-bert", base)
    repo = new_repo("hy-AM", tmp_path / "repo", base_model=str(base), dataset=str(cv_release))
    zero_rate_run(repo, cv_release, "--learning_rate", "1e-2")
    first = load_file(repo / "model.safetensors")
    log = zero_rate_run(repo, cv_release, "--overwrite_output_dir")
    assert "Starting from the weights in ." in log
    second = load_file(repo / "model.safetensors")
    assert all(torch.equal(first[name], second[name]) for name in first)


def one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stdout[-2000:] + result.stderr[-2000:]
    # Stopped before any data was prepared.
    assert "preparing" not in result.stdout + result.stderr
    return lines[0]


def test_catalogue_base_offline_stops_in_one_line(cv_release, tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="facebook/wav2vec2-xls-r-300m")
    result = run_script(repo, "--model_name_or_path", "./", "--output_dir", "./", *data_args(cv_release),
                        "--do_train", "--max_steps", "2", "--use_cpu",
                        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")})
    line = one_line_error(result)
    assert "facebook/wav2vec2-xls-r-300m" in line and "HF_HUB_OFFLINE" in line
    assert "--model_name_or_path DIR" in line


def test_no_weights_and_no_record_asks_for_from_scratch(cv_release, tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "base_model.json").unlink()
    result = run_script(repo, "--model_name_or_path", "./", "--output_dir", "./", *data_args(cv_release),
                        "--do_train", "--max_steps", "1", "--use_cpu")
    assert "--from_scratch" in one_line_error(result)


def test_checkpoint_of_another_family_is_refused(cv_release, tmp_path):
    """config.json says wav2vec2, the weights are w2v-BERT's: nothing would load."""
    base = tmp_path / "base"
    save_checkpoint("wav2vec2-bert", base)
    Wav2Vec2Config(**XLSR_STYLE).save_pretrained(base)
    save_waveform_extractor(base)
    repo = new_repo("hy-AM", tmp_path / "repo", base_model=str(base))
    result = run_script(repo, "--model_name_or_path", "./", "--output_dir", "./", *data_args(cv_release),
                        "--do_train", "--max_steps", "1", "--use_cpu")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "do not fit config.json" in result.stdout + result.stderr


@pytest.mark.parametrize("problem, message", [
    ("missing", "no such folder"),
    ("no-config", "config.json: no such file"),
    ("no-weights", "holds no weights"),
])
def test_bad_base_model_folder_is_one_line(problem, message, tmp_path):
    base = tmp_path / "base"
    if problem != "missing":
        save_checkpoint("wav2vec2-model", base)
        (base / ("config.json" if problem == "no-config" else "model.safetensors")).unlink()
    with pytest.raises(CtcforgeError, match=message):
        new_repo("hy-AM", tmp_path / "repo", base_model=str(base))


# The transformers speech-recognition README's command line for this script, with only the
# dataset changed to a local Common Voice folder (and the split names as Common Voice's
# Hub datasets had them). --fp16 on this CPU becomes bf16.
UPSTREAM = ["--overwrite_output_dir", "--num_train_epochs", "15", "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "2", "--learning_rate", "3e-4", "--warmup_steps", "500",
            "--eval_strategy", "steps", "--text_column_name", "sentence",
            "--length_column_name", "input_length", "--save_steps", "400", "--eval_steps", "100",
            "--layerdrop", "0.0", "--save_total_limit", "3", "--freeze_feature_encoder",
            "--gradient_checkpointing", "--chars_to_ignore", ",", "?", ".", "!", "-", ";", ":", '"',
            "“", "%", "‘", "”", "�", "--fp16", "--group_by_length", "--do_train", "--do_eval"]


@pytest.mark.parametrize("kind", ["wav2vec2-pretraining", "wav2vec2-bert"])
def test_upstream_readme_command_line_runs(kind, cv_release, tmp_path):
    base = tmp_path / "xlsr"
    save_checkpoint(kind, base)
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    output_dir = tmp_path / "wav2vec2-common_voice-hy-demo"
    result = run_script(repo, "--dataset_name", str(cv_release), "--model_name_or_path", str(base),
                        "--dataset_config_name", "hy-AM", "--output_dir", str(output_dir), *UPSTREAM,
                        "--train_split_name", "train+validation", "--max_steps", "2",
                        "--report_to", "none", "--dataloader_num_workers", "0")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "--fp16 needs a CUDA GPU" in log and "training in bf16" in log
    assert "reading dev.tsv" in log
    assert (output_dir / "model.safetensors").is_file()
    state = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 2


def test_push_to_hub_without_login_is_one_line(cv_release, tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    result = run_script(repo, "--model_name_or_path", "./", "--output_dir", "./", *data_args(cv_release),
                        "--do_train", "--max_steps", "1", "--push_to_hub",
                        env={"HF_HOME": str(tmp_path / "no-login"), "HF_TOKEN": ""})
    assert "ctcforge push" in one_line_error(result)
