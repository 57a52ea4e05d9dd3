"""WER and CER, defined once for every caller.

The training script's `compute_metrics`, `eval.py`, `ctcforge lm` tuning and, through the
files those write, the model card and the demo all take their numbers from here, so one
pair of references and predictions gives one WER and one CER wherever it is scored.

Both rates are corpus rates: the edits over all utterances divided by the length of all
references (jiwer's), over text the repo's normaliser has already normalised.

- **WER** counts words as the language profile splits them (`word_split`): at spaces,
  into fugashi morphemes (ja), or one word per character (zh-HK).
- **CER** counts characters of the normalised text. Where the language writes spaces
  between words (`space`), a space is a character like any other: the model has to write
  it, and a missing one merges two words. Where the language writes no spaces (`char`,
  `fugashi`), spaces are removed before counting: they are not part of the writing, so a
  stray one is not an error, and a reference with no spaces is not padded by them.
"""

from __future__ import annotations

from typing import NamedTuple

import jiwer

SPACELESS_SPLITS = ("char", "fugashi")  # word splits of languages written without spaces


class ErrorRates(NamedTuple):
    wer: float
    cer: float


def words_for_wer(text: str, normalizer) -> str:
    """The text re-spaced into the words WER counts."""
    return normalizer.words_joined(text)


def characters_for_cer(text: str, normalizer) -> str:
    """The text as CER counts it: without spaces for a language written without them."""
    return text.replace(" ", "") if normalizer.word_split in SPACELESS_SPLITS else text


def word_error_rate(references: list[str], predictions: list[str], normalizer) -> float:
    return jiwer.wer([words_for_wer(t, normalizer) for t in references],
                     [words_for_wer(t, normalizer) for t in predictions])


def character_error_rate(references: list[str], predictions: list[str], normalizer) -> float:
    return jiwer.cer([characters_for_cer(t, normalizer) for t in references],
                     [characters_for_cer(t, normalizer) for t in predictions])


METRICS = {"wer": word_error_rate, "cer": character_error_rate}


def error_rates(references: list[str], predictions: list[str], normalizer) -> ErrorRates:
    """WER and CER of normalised predictions against normalised, non-empty references."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("no references to score")
    return ErrorRates(word_error_rate(references, predictions, normalizer),
                      character_error_rate(references, predictions, normalizer))
