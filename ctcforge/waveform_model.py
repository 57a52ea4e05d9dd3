"""A CTC model with its feature extractor's work in front of it, as one torch module from
waveform to logits, for `ctcforge export` to trace into ONNX.

transformers' feature extractors are numpy code outside the model; a runtime that loads
only the ONNX file (sherpa-onnx, onnx-asr) feeds the model audio samples. These modules
redo each extractor's arithmetic in torch operations the exporter can trace:

- `WaveformNormalizer`: Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation
  of each clip (or nothing, for an extractor with do_normalize off);
- `LogMelFrontEnd`: SeamlessM4TFeatureExtractor's (w2v-BERT) Kaldi-style log-mel filterbank,
  each mel bin normalised over the clip, frames stacked in pairs (`transcription.log_mel_frames`
  is its numpy twin). In float64 to the end, where the extractor rounds its log-mel to float32
  and normalises in float32: the features are within about 1e-5 of the extractor's, and
  all but independent of the input's scale, which sherpa-onnx changes (it normalises
  each clip before the model sees it).

Each clip of a batch is normalised on its own, over all its samples: the clips of a batch
share one length, since there is no padding mask.
"""

from __future__ import annotations

import numpy as np
import torch

from ctcforge.runtime.errors import CtcforgeError


class WaveformNormalizer(torch.nn.Module):
    def __init__(self, normalize: bool):
        super().__init__()
        self.normalize = normalize

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """The model's input and no attention mask: nothing is padded."""
        if not self.normalize:
            return waveform, None
        mean = waveform.mean(dim=-1, keepdim=True)
        variance = ((waveform - mean) ** 2).mean(dim=-1, keepdim=True)  # numpy's var: ddof 0
        return (waveform - mean) / torch.sqrt(variance + 1e-7), None


class LogMelFrontEnd(torch.nn.Module):
    """25 ms povey-windowed frames every 10 ms (Kaldi's snip-edges framing), DC offset
    removed, pre-emphasis 0.97, 512-point power spectrum, mel filters, natural log with the
    extractor's floor, then per-bin normalisation (ddof 1) and frame pairs side by side;
    the features and their attention mask."""

    FRAME, HOP, FFT, PREEMPHASIS = 400, 160, 512, 0.97
    MEL_FLOOR = 1.192092955078125e-07

    def __init__(self, feature_extractor):
        super().__init__()
        window = np.asarray(feature_extractor.window, dtype=np.float64)
        # The 512-point real DFT of a 400-sample frame padded with zeros, as two matrices:
        # the padding contributes nothing, so only the first 400 rows are needed.
        bins = np.arange(self.FFT // 2 + 1)
        angles = 2 * np.pi * np.outer(np.arange(self.FRAME), bins) / self.FFT
        self.register_buffer("framing", torch.eye(self.FRAME)[:, None, :])
        self.register_buffer("window", torch.from_numpy(window))
        self.register_buffer("cosines", torch.from_numpy(np.cos(angles)))
        self.register_buffer("sines", torch.from_numpy(np.sin(angles)))
        self.register_buffer("mel_filters", torch.from_numpy(np.asarray(feature_extractor.mel_filters, np.float64)))
        self.stride = feature_extractor.stride
        self.padding_value = float(feature_extractor.padding_value)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        # Frames as a convolution with the identity (exact: one product by 1 per output), as
        # the exporter cannot trace unfold over a dynamic length; onnxruntime has no float64
        # convolution, so the framing is float32 and all after it float64.
        frames = torch.nn.functional.conv1d(waveform[:, None, :], self.framing, stride=self.HOP).transpose(1, 2)
        frames = frames.double() * 32768.0  # Kaldi's 16-bit scale
        frames = frames - frames.mean(dim=-1, keepdim=True)
        emphasised = torch.cat([frames[..., :1] * (1 - self.PREEMPHASIS),
                                frames[..., 1:] - self.PREEMPHASIS * frames[..., :-1]], dim=-1)
        windowed = emphasised * self.window
        power = (windowed @ self.cosines) ** 2 + (windowed @ self.sines) ** 2
        log_mel = torch.log(torch.clamp(power @ self.mel_filters, min=self.MEL_FLOOR))
        mean = log_mel.mean(dim=1, keepdim=True)
        variance = ((log_mel - mean) ** 2).sum(dim=1, keepdim=True) / (log_mel.shape[1] - 1)
        normalised = (log_mel - mean) / torch.sqrt(variance + 1e-7)
        # The extractor pads an odd frame count to whole pairs with its padding value and
        # masks the incomplete last pair; the same here, rows appended then cut to whole pairs.
        batch, count, bins = normalised.shape
        pairs = (count + self.stride - 1) // self.stride
        padding = torch.full((batch, self.stride - 1, bins), self.padding_value, dtype=normalised.dtype)
        padded = torch.cat([normalised, padding], dim=1)[:, : pairs * self.stride]
        real = torch.cat([torch.ones_like(normalised[..., 0]), torch.zeros_like(padding[..., 0])], dim=1)
        attention_mask = real[:, self.stride - 1 : pairs * self.stride : self.stride].long()
        return padded.reshape(batch, pairs, bins * self.stride).float(), attention_mask


class WaveformToLogits(torch.nn.Module):
    def __init__(self, model, front_end: torch.nn.Module):
        super().__init__()
        self.model = model
        self.front_end = front_end

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        features, attention_mask = self.front_end(waveform)
        return self.model(features, attention_mask=attention_mask).logits


def waveform_model(model, feature_extractor) -> WaveformToLogits:
    """`model` behind the torch version of `feature_extractor`."""
    kind = type(feature_extractor).__name__
    if kind == "Wav2Vec2FeatureExtractor":
        front_end = WaveformNormalizer(bool(feature_extractor.do_normalize))
    elif kind == "SeamlessM4TFeatureExtractor":
        front_end = LogMelFrontEnd(feature_extractor)
    else:
        raise CtcforgeError(f"ctcforge export knows the wav2vec2 and w2v-BERT feature extractors, not {kind}")
    return WaveformToLogits(model, front_end).eval()
