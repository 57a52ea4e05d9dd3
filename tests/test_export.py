"""`ctcforge export`'s tokens.txt: the blank and the word delimiter as runtimes read them,
and labels a runtime could not read back refused. (The export itself, loaded by sherpa-onnx,
is tested on a trained repo in test_pipeline.py.)"""

import json

import pytest
from transformers import Wav2Vec2CTCTokenizer

from ctcforge.export import tokens_text
from ctcforge.runtime.errors import CtcforgeError


def tokenizer(tmp_path, labels):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({label: index for index, label in enumerate(labels)}), encoding="utf-8")
    return Wav2Vec2CTCTokenizer(str(path), unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|")


@pytest.mark.parametrize("labels, vocab_size, expected", [
    (["|", "ա", "բ", "[UNK]", "[PAD]"], 5, "\u2581 0\nա 1\nբ 2\n[UNK] 3\n<blk> 4\n"),
    (["[PAD]", "|", "a", "[UNK]"], 4, "<blk> 0\n\u2581 1\na 2\n[UNK] 3\n"),
])
def test_tokens_name_every_output_the_blank_and_the_delimiter(tmp_path, labels, vocab_size, expected):
    assert tokens_text(tokenizer(tmp_path, labels), vocab_size) == expected


@pytest.mark.parametrize("labels, vocab_size, complaint", [
    (["|", "a b", "[UNK]", "[PAD]"], 4, "white space"),  # tokens.txt splits a line on it
    (["|", "a", "[UNK]", "[PAD]"], 9, "have no token in vocab.json"),  # more outputs than tokens (<s>, </s> added)
    (["|", "a", "[UNK]", "[PAD]"], 3, "the CTC blank, is not among the model's outputs"),  # the blank is not among the outputs
])
def test_labels_a_runtime_could_not_read_are_refused(tmp_path, labels, vocab_size, complaint):
    with pytest.raises(CtcforgeError, match=complaint):
        tokens_text(tokenizer(tmp_path, labels), vocab_size)
