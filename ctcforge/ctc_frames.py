"""CTC frame arithmetic, defined once: how many output frames a clip gets, and how many a
transcript needs.

This file is copied unchanged into every generated repo. Training (its evaluation and its
filter of clips with more labels than frames), eval.py and `ctcforge lm` tuning all count
frames here.

A clip's output frames are computed from the length of its own model input: samples for a
raw-waveform wav2vec2, feature rows for a log-mel model (w2v-BERT). Never from the sum of a
padded batch's attention mask: the w2v-BERT feature extractor stacks frames in pairs and
masks a last row that holds a single real frame, so the mask is one row short of the
input for about half the clips, and the model's last frame, which the pipeline decodes,
would be lost.
"""

from __future__ import annotations

from typing import Sequence

import torch


def output_frames(model, input_lengths: Sequence[int]) -> list[int]:
    """The output frames of each clip, from its unpadded input length (samples or rows)."""
    # transformers has no public name for a CTC model's length arithmetic; this private
    # method is the one its own loss and attention masks use, so it cannot disagree with them.
    lengths = model._get_feat_extract_output_lengths(torch.as_tensor(list(input_lengths)))
    return [int(n) for n in torch.as_tensor(lengths).tolist()]


def input_lengths(features: Sequence) -> list[int]:
    """Each clip's model input length, from its unpadded features (one array per clip)."""
    return [len(clip) for clip in features]


def required_frames(labels: Sequence[int]) -> int:
    """CTC frames a label sequence needs: one per label, plus a blank between two equal
    neighbouring labels (the "l l" of a doubled letter), which would otherwise merge."""
    return len(labels) + sum(1 for left, right in zip(labels, labels[1:]) if left == right)
