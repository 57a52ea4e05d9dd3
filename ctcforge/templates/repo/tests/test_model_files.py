"""config.json, the tokenizer and vocab.json agree, and the architecture builds."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC, Wav2Vec2CTCTokenizer

from conftest import REPO

vocab = json.loads((REPO / "vocab.json").read_text(encoding="utf-8"))


def test_vocab_size_matches_tokenizer_and_config():
    config = AutoConfig.from_pretrained(REPO)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(REPO)
    # transformers 5 adds <s>/</s> unless told not to; a mismatch breaks CTC decoding.
    assert len(tokenizer) == len(vocab) == config.vocab_size
    assert config.pad_token_id == vocab["[PAD]"] == tokenizer.pad_token_id


def test_tokenizer_round_trips_the_word_delimiter():
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(REPO)
    letters = [t for t in vocab if len(t) == 1 and t != "|"][:6]
    text = "".join(letters[:3]) + " " + "".join(letters[3:6])
    assert tokenizer.decode(tokenizer(text).input_ids, group_tokens=False) == text


def test_architecture_builds_and_maps_audio_to_logits():
    config = AutoConfig.from_pretrained(REPO)
    extractor = AutoFeatureExtractor.from_pretrained(REPO)
    small = config.num_hidden_layers * config.hidden_size <= 8 * 512
    if not small:
        # Large catalogue models are only checked for shape, on the meta device.
        with torch.device("meta"):
            model = AutoModelForCTC.from_config(config)
        assert model.lm_head.out_features == len(vocab)
        return
    model = AutoModelForCTC.from_config(config).eval()
    audio = torch.randn(16000 * 2).numpy()
    inputs = extractor(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[0] == 1 and logits.shape[-1] == len(vocab) and logits.shape[1] > 10


def weight_shapes() -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in the repo's trained weights, read without loading them."""
    shards = [REPO / "model.safetensors"]
    if (REPO / "model.safetensors.index.json").is_file():
        index = json.loads((REPO / "model.safetensors.index.json").read_text(encoding="utf-8"))
        shards = [REPO / name for name in sorted(set(index["weight_map"].values()))]
    if all(shard.is_file() for shard in shards):
        from safetensors import safe_open

        shapes = {}
        for shard in shards:
            with safe_open(str(shard), framework="pt") as weights:
                shapes.update({name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()})
        return shapes
    if (REPO / "pytorch_model.bin").is_file():
        state = torch.load(REPO / "pytorch_model.bin", map_location="meta", weights_only=True)
        return {name: tuple(tensor.shape) for name, tensor in state.items()}
    pytest.skip("no trained weights yet")


def test_trained_weights_fit_config_and_vocab():
    """Weights for other labels or another architecture load with a warning at most, then
    transcribe garbage; their shapes must be the ones config.json and vocab.json describe."""
    shapes = weight_shapes()
    config = AutoConfig.from_pretrained(REPO)
    assert shapes.get("lm_head.weight", (None,))[0] == config.vocab_size == len(vocab), (
        f"the weights' CTC head has {shapes.get('lm_head.weight')} rows, config.json vocab_size "
        f"{config.vocab_size}, vocab.json {len(vocab)} labels: restore the files the weights were trained with")
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in AutoModelForCTC.from_config(config).state_dict().items()}
    # Names that only one side has (a weight-norm parametrisation saved under another name)
    # are no shape evidence; a tensor both name must agree.
    wrong = {name: (shape, expected[name]) for name, shape in shapes.items()
             if name in expected and shape != expected[name]}
    assert not wrong, f"weights do not fit config.json (weights, config): {wrong}"
