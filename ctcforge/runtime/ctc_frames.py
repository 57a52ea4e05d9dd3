"""CTC frame arithmetic, defined once: how many output frames a clip gets, and how many a
transcript needs.

Training (its evaluation and its
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

import warnings
from typing import Callable, Sequence

import numpy as np
import torch

# Sample counts on which InputLengthFromSamples checks its arithmetic against the extractor:
# around the first log-mel window (400 samples), a hop (160) and a stacked pair of rows.
CHECKED_SAMPLE_COUNTS = (399, 400, 559, 560, 719, 16000, 16160, 24321)


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


class InputLengthFromSamples:
    """A clip's model input length from its sample count, without its audio: what length
    grouping sorts by, and what the label check counts output frames from, when only a
    clip's listed duration is known (features computed batch by batch).

    A raw-waveform extractor's input is the samples themselves; SeamlessM4T's log-mel
    (w2v-BERT) makes a 25 ms frame every 10 ms, pads the frames to a multiple of `stride`
    (its default pad_to_multiple_of) and stacks them in `stride`s. That arithmetic is used only after it gives the extractor's own
    lengths on CHECKED_SAMPLE_COUNTS; an extractor it does not match is run on silence of
    each clip's length instead (exact, and slower).
    """

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor
        self.input_name = feature_extractor.model_input_names[0]
        self.arithmetic = self.known_arithmetic()
        if self.arithmetic and any(self.arithmetic(n) != self.measured(n) for n in CHECKED_SAMPLE_COUNTS):
            self.arithmetic = None

    def __call__(self, samples: int) -> int:
        return self.arithmetic(samples) if self.arithmetic else self.measured(samples)

    def known_arithmetic(self) -> Callable[[int], int] | None:
        extractor = self.feature_extractor
        if self.input_name == "input_values":
            return lambda samples: max(samples, 0)
        window, stride = getattr(extractor, "window", None), getattr(extractor, "stride", None)
        if self.input_name == "input_features" and window is not None and stride:
            frame, hop = len(window), 160  # SeamlessM4TFeatureExtractor's 10 ms hop at 16 kHz
            return lambda samples: -(-(1 + (samples - frame) // hop) // stride) if samples >= frame else 0
        return None

    def measured(self, samples: int) -> int:
        """The length the extractor gives a clip of `samples` samples (0 if it gives none)."""
        if samples <= 0:
            return 0
        try:
            # Silence normalised per mel bin is 0 / 0: only the shape is wanted here.
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                inputs = self.feature_extractor(np.zeros(samples, dtype=np.float32),
                                                sampling_rate=self.feature_extractor.sampling_rate)
        except Exception:  # too short for one frame
            return 0
        return len(inputs[self.input_name][0])
