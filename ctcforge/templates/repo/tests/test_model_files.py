"""config.json, the tokenizer and vocab.json agree, and the architecture builds."""

import json

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
