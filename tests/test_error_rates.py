"""WER and CER have one definition (`error_rates.py`, shipped into every repo); these tables
hold it, and the same table goes through every caller that scores text."""

import numpy as np
import pytest
from repo_script import imported_script, repo_script_module
from transformers import EvalPrediction, Wav2Vec2CTCTokenizer

from ctcforge.languages import load_profile
from ctcforge.new import new_repo
from ctcforge.runtime.error_rates import error_rates
from ctcforge.runtime.text_normalizer import Normalizer


def normalizer(code: str) -> Normalizer:
    return Normalizer(load_profile(code).to_dict())


# (locale, references, predictions, WER, CER), worked by hand.
TABLE = [
    # One substituted word of three; one substituted letter of seven characters.
    ("hy-AM", ["աբ գդ", "եզ"], ["աբ գե", "եզ"], 1 / 3, 1 / 7),
    # A lost space merges two words: WER counts a substitution and a deletion, CER the space.
    ("hy-AM", ["աբ գդ"], ["աբգդ"], 2 / 2, 1 / 5),
    # Every character a word (zh-HK): a dropped and a substituted character of five.
    ("zh-HK", ["你好嗎", "食飯"], ["你好", "食粥"], 2 / 5, 2 / 5),
    # Cantonese is written without spaces, so a stray space is no error in either rate.
    ("zh-HK", ["你好嗎"], ["你 好嗎"], 0.0, 0.0),
    ("zh-HK", ["你好 嗎"], ["你好嗎"], 0.0, 0.0),
]


@pytest.mark.parametrize("code, references, predictions, wer, cer", TABLE)
def test_the_definition(code, references, predictions, wer, cer):
    rates = error_rates(references, predictions, normalizer(code))
    assert rates.wer == pytest.approx(wer) and rates.cer == pytest.approx(cer)


def test_japanese_cer_ignores_spaces():
    """ja is written without spaces too (its words come from fugashi)."""
    assert error_rates(["きょうはあめ"], ["きょうは あめ"], normalizer("ja")).cer == 0.0


@pytest.mark.parametrize("references, predictions", [([], []), (["a"], [])])
def test_nothing_to_score_is_an_error(references, predictions):
    with pytest.raises(ValueError):
        error_rates(references, predictions, normalizer("hy-AM"))


@pytest.fixture(scope="module", params=["hy-AM", "zh-HK"])
def repo(request, tmp_path_factory):
    return new_repo(request.param, tmp_path_factory.mktemp("repo") / request.param, base_model="tiny")


def table_rows(repo):
    code = repo.name
    return [(references, predictions, wer, cer) for c, references, predictions, wer, cer in TABLE if c == code]


def as_ids(tokenizer, texts):
    """Texts as a padded id matrix, -100 as the Trainer pads; spaces as the word delimiter."""
    rows = [tokenizer.convert_tokens_to_ids(list(text.replace(" ", tokenizer.word_delimiter_token)))
            for text in texts]
    width = max(len(row) for row in rows)
    return np.array([row + [-100] * (width - len(row)) for row in rows])


def test_the_training_scripts_compute_metrics_gives_the_table(repo):
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(repo)
    with imported_script(repo) as script:
        compute_metrics = script.metrics_computer(tokenizer, normalizer(repo.name), ["wer", "cer"])
        for references, predictions, wer, cer in table_rows(repo):
            scores = compute_metrics(EvalPrediction(predictions=as_ids(tokenizer, predictions),
                                                    label_ids=as_ids(tokenizer, references)))
            assert scores == {"wer": pytest.approx(wer), "cer": pytest.approx(cer)}


@pytest.mark.parametrize("definition", ["the repo's eval.py", "ctcforge's runtime"])
def test_eval_and_lm_tuning_score_with_the_one_definition(repo, definition):
    """eval.py scores with the name it imports from the repo's runtime; `ctcforge lm`
    tuning with ctcforge's own runtime, the same file."""
    from ctcforge.runtime.error_rates import error_rates

    with repo_script_module(repo, "eval.py") as module:
        score = module.error_rates if definition == "the repo's eval.py" else error_rates
        for references, predictions, wer, cer in table_rows(repo):
            assert tuple(score(references, predictions, normalizer(repo.name))) == (
                pytest.approx(wer), pytest.approx(cer))
