"""Turning clips into text with a CTC model, the way eval.py and `ctcforge lm` tuning do it.

Used by eval.py.
It holds the machinery behind eval.py's loop, so that eval.py reads top to bottom:

- `read_audio`: one dataset cell decoded (by `speech_data.decode_audio`, as training
  decodes it), a broken file turned into an `UnusableAudio` with its skip reason;
- `Preprocessor`: a clip, or its chunks as transformers' ASR pipeline cuts them, through
  the feature extractor alone, so batching never changes what the model sees;
- `install_fast_log_mel`: the w2v-BERT log-mel features for all frames at once, bit for
  bit the extractor's own;
- `ClipReader` and `read_clips`: DataLoader workers that decode and preprocess while the
  model runs;
- `Transcriber`: length-sorted batches, each clip keeping the frames it gets alone
  (`ctc_frames.output_frames` of its own input length), greedy text or logits for the LM.
"""

from __future__ import annotations

import functools
import itertools
import os
import warnings
from typing import NamedTuple

import datasets
import numpy as np
import torch
from transformers import AutoFeatureExtractor

from . import adapters, ctc_frames
from .skip_reasons import EMPTY_AUDIO, MISSING_AUDIO, TOO_SHORT_FOR_MODEL, TRUNCATED_AUDIO, UNREADABLE_AUDIO
from .speech_data import decode_audio

# A clip decoding to less than this share of the duration its header declares (and at
# least TRUNCATION_MIN_SECONDS less) is taken for a file cut short.
TRUNCATION_SHARE = 0.9
TRUNCATION_MIN_SECONDS = 0.1



class UnusableAudio(Exception):
    """A clip that cannot be evaluated; `reason` is one of `skip_reasons`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


def read_audio(value: dict, audio: datasets.Audio) -> np.ndarray:
    """The samples of one undecoded `audio` cell, mono float32 at `audio.sampling_rate`.

    Decoded by `speech_data.decode_audio`, as training decodes it; the checks here turn
    a broken file into a counted skip.
    """
    path, data = value.get("path"), value.get("bytes")
    if data is None and path and "://" not in path:
        if not os.path.exists(path):
            raise UnusableAudio(MISSING_AUDIO, path)
        if os.path.getsize(path) == 0:
            raise UnusableAudio(EMPTY_AUDIO, path)
    try:
        samples, declared = decode_audio(value, audio.sampling_rate)
    except Exception as error:  # torchcodec raises several types for broken files
        raise UnusableAudio(UNREADABLE_AUDIO, first_line(error)) from None
    seconds = len(samples) / audio.sampling_rate
    if declared and seconds < TRUNCATION_SHARE * declared and declared - seconds > TRUNCATION_MIN_SECONDS:
        raise UnusableAudio(TRUNCATED_AUDIO, f"decoded {seconds:.2f} s of the {declared:.2f} s its header declares")
    return samples


def first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


class Piece(NamedTuple):
    """One forward-pass input: a clip, or a chunk of one, through the feature extractor."""

    features: dict[str, np.ndarray]  # unbatched, as the feature extractor made it alone
    length: int  # its length in model input steps (samples, or feature frames)
    stride: tuple[int, int, int] | None  # a chunk's (samples, left, right) stride; None: a whole clip


class ReadClip(NamedTuple):
    row: int
    samples: int
    pieces: list[Piece]  # empty when skipped
    reason: str | None = None  # why it is skipped
    detail: str = ""


class Preprocessor:
    """Turns a clip into what the model sees of it, as transformers' ASR pipeline does:
    the clip, or with chunking on its overlapping chunks, each through the feature
    extractor on its own. Padding to a batch comes later and is undone by each piece's
    own length, so every clip gets the frames it gets alone. Holds no model, so it is
    cheap to hand to the audio-reading workers, where it runs."""

    def __init__(self, feature_extractor, samples_per_frame: int):
        self.feature_extractor = feature_extractor
        self.samples_per_frame = samples_per_frame
        self.min_samples = 1
        self.chunk_samples = self.stride_samples = None

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def use_chunks(self, chunk_length_s: float, stride_length_s: float | None) -> None:
        """Cut clips longer than `chunk_length_s` into overlapping chunks, with the
        arithmetic of the pipeline (stride defaults to a sixth of the chunk, both rounded
        to whole output frames)."""
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        self.chunk_samples = self.whole_frames(chunk_length_s)
        self.stride_samples = self.whole_frames(stride_length_s)
        if self.chunk_samples <= 2 * self.stride_samples:
            raise ValueError("--chunk_length_s must be more than twice --stride_length_s")

    def whole_frames(self, seconds: float) -> int:
        frames = round(seconds * self.sampling_rate / self.samples_per_frame)
        return int(frames * self.samples_per_frame)

    def pieces(self, array: np.ndarray) -> list[Piece]:
        """The clip whole, or with chunking on the pieces the pipeline's `chunk_iter`
        cuts (a clip up to a chunk long being one chunk)."""
        if self.chunk_samples is None:
            return [self.piece(array, None)]
        step = self.chunk_samples - 2 * self.stride_samples
        pieces = []
        for start in range(0, len(array), step):
            chunk = array[start : start + self.chunk_samples]
            is_last = start + self.chunk_samples >= len(array)
            left = 0 if start == 0 else self.stride_samples
            right = 0 if is_last else self.stride_samples
            if len(chunk) > left:
                pieces.append(self.piece(chunk, (len(chunk), left, right)))
            if is_last:
                break
        return pieces

    def piece(self, array: np.ndarray, stride: tuple[int, int, int] | None) -> Piece:
        # An attention mask whatever the model, as the pipeline asks for one.
        batch = self.feature_extractor(array, sampling_rate=self.sampling_rate, return_attention_mask=True)
        features = {name: values[0] for name, values in batch.items()}
        return Piece(features, len(features[self.feature_extractor.model_input_names[0]]), stride)


def install_fast_log_mel(feature_extractor) -> bool:
    """Gives a SeamlessM4T (w2v-BERT) log-mel extractor a vectorised filterbank.

    transformers computes it one 25 ms frame at a time in a Python loop, which took 70%
    of eval.py's time on the `tiny` model; here the frames are one 2-D array and the
    same numpy operations run on all of them at once, in the same order and precision.
    It is installed only if it gives exactly the extractor's own features on a test
    signal, so the model sees bit for bit what `pipeline()` gives it."""
    if type(feature_extractor).__name__ != "SeamlessM4TFeatureExtractor":
        return False
    reference = feature_extractor._extract_fbank_features
    fast = functools.partial(log_mel_frames, feature_extractor.window, feature_extractor.mel_filters)
    signal = np.random.default_rng(0).uniform(-0.5, 0.5, 2 * feature_extractor.sampling_rate).astype(np.float32)
    try:
        same = np.array_equal(fast(signal), reference(signal))
    except Exception:  # a future extractor with other shapes: keep its own code
        same = False
    if same:
        feature_extractor._extract_fbank_features = fast
    return same


def log_mel_frames(window: np.ndarray, mel_filters: np.ndarray, waveform: np.ndarray) -> np.ndarray:
    """SeamlessM4TFeatureExtractor._extract_fbank_features (Kaldi-style: 25 ms povey
    window, 10 ms hop, 512-point FFT, DC offset removed, pre-emphasis 0.97, power mel
    spectrum, natural log), vectorised over the frames."""
    frame_length, hop_length, fft_length = len(window), 160, 2 * (mel_filters.shape[0] - 1)
    if waveform.ndim == 2:
        waveform = waveform[0]  # the extractor's choice for stereo: the left channel
    samples = (np.squeeze(waveform) * 2**15).astype(np.float64)  # Kaldi's 16-bit scale
    if samples.size < frame_length:
        raise ValueError(f"{samples.size} samples make no {frame_length}-sample frame")
    count = 1 + (samples.size - frame_length) // hop_length
    frames = np.zeros((count, fft_length))
    frames[:, :frame_length] = np.lib.stride_tricks.sliding_window_view(samples, frame_length)[::hop_length][:count]
    head = frames[:, :frame_length]
    head -= head.mean(axis=1, keepdims=True)
    head[:, 1:] -= 0.97 * head[:, :-1]  # the right side is computed before the subtraction
    head[:, 0] *= 1 - 0.97
    head *= window.astype(np.float64)
    # transformers stores each frame's spectrum as complex64 before taking its power.
    spectrum = np.abs(np.fft.rfft(frames, axis=1).astype(np.complex64), dtype=np.float64) ** 2.0
    mel = np.maximum(1.192092955078125e-07, np.dot(mel_filters.T, spectrum.T))
    return np.asarray(np.log(mel), np.float32).T


class ClipReader(torch.utils.data.Dataset):
    """The listed rows of a dataset, decoded and preprocessed where a DataLoader worker
    runs it. A clip that cannot be used comes back with the reason instead of raising,
    so one broken file never ends the run."""

    def __init__(self, dataset: datasets.Dataset, rows: list[int], preprocessor: Preprocessor):
        # Undecoded cells: the worker decodes, and needs the path to tell a missing
        # file from a broken one.
        self.cells = dataset.select_columns(["audio"]).cast_column("audio", datasets.Audio(decode=False))
        self.audio = datasets.Audio(sampling_rate=preprocessor.sampling_rate)
        self.rows = rows
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple:
        """A ReadClip as plain tuples, which pickle back from a worker whatever name this
        module is imported under."""
        row = self.rows[index]
        try:
            array = read_audio(self.cells[row]["audio"], self.audio)
        except UnusableAudio as unusable:
            return row, 0, [], unusable.reason, unusable.detail
        if len(array) < self.preprocessor.min_samples:
            detail = f"{len(array)} samples, the model needs {self.preprocessor.min_samples}"
            return row, len(array), [], TOO_SHORT_FOR_MODEL, detail
        return row, len(array), [tuple(piece) for piece in self.preprocessor.pieces(array)]


def as_read(item: tuple) -> tuple:
    """The DataLoader's collate function: clips come one at a time, arrays untouched."""
    return item


def read_clips(reader: ClipReader, num_workers: int, read_ahead: int):
    """The reader's clips in row order, prepared by `num_workers` processes that keep up
    to `read_ahead` clips ready while the model works."""
    per_worker = -(-read_ahead // num_workers) if num_workers else None
    loader = torch.utils.data.DataLoader(
        reader, batch_size=None, collate_fn=as_read, num_workers=num_workers, prefetch_factor=per_worker
    )
    for row, samples, pieces, *skipped in loader:
        yield ReadClip(row, samples, [Piece(*piece) for piece in pieces], *skipped)


class Transcriber:
    """Turns clips into text with a CTC model, giving each clip the text
    `pipeline("automatic-speech-recognition")` gives it (with `model_kwargs={"target_lang":
    language}` for a model with language adapters)."""

    def __init__(self, model_id: str, device: torch.device, batch_size: int, language: str | None = None,
                 default_language: str | None = None):
        """For a model with language adapters, `language` is the adapter to load; without
        one, `default_language` (a repo's ISO 639-3 code; by default the model folder's
        language_profile.json's), else the folder's only adapter (`adapters`)."""
        feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)
        self.language = adapters.inference_language(
            model_id, language, default_language or adapters.profile_language(model_id))
        model, self.tokenizer = adapters.load_ctc_model(model_id, self.language)
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        # Without attention masks, padding a clip changes what the model hears
        # (group-norm wav2vec2 models): such models only batch clips of equal length.
        self.pads_safely = bool(getattr(feature_extractor, "return_attention_mask", False))
        self.beam_search = None  # a beam_search.BeamSearch: decode with the n-gram LM
        self.engine = self.model  # what runs the forward pass (acoustic_engines.py); the model answers the rest
        self.backend = "torch"
        # Input samples per output frame (320 for wav2vec2), the unit chunks align to.
        samples_per_frame = getattr(self.model.config, "inputs_to_logits_ratio", 1)
        install_fast_log_mel(feature_extractor)
        self.preprocessor = Preprocessor(feature_extractor, samples_per_frame)
        self.preprocessor.min_samples = self.shortest_transcribable_length()

    def use_backend(self, backend: str) -> None:
        """Run the forward pass on `backend` (acoustic_engines.BACKENDS). The ONNX engines
        are traced on a padded batch of two clips of noise."""
        from . import acoustic_engines

        noise = np.random.default_rng(0).uniform(-0.1, 0.1, 2 * self.sampling_rate).astype(np.float32)
        pieces = [self.preprocessor.piece(noise, None), self.preprocessor.piece(noise[: self.sampling_rate], None)]
        example = self.feature_extractor.pad([piece.features for piece in pieces], padding=True,
                                             return_attention_mask=True, return_tensors="pt")
        self.engine = acoustic_engines.acoustic_engine(self.model, backend, dict(example))
        self.backend = backend

    @property
    def feature_extractor(self):
        return self.preprocessor.feature_extractor

    @property
    def sampling_rate(self) -> int:
        return self.preprocessor.sampling_rate

    def shortest_transcribable_length(self) -> int:
        """The fewest samples that give the model one unmasked output frame, found once by
        bisection: the feature extractor's window and the model's strides decide it."""
        low, high = 1, self.sampling_rate  # a second of audio always gives frames
        while low < high:
            middle = (low + high) // 2
            if self.output_frames(middle) >= 1:
                high = middle
            else:
                low = middle + 1
        return low

    def output_frames(self, samples: int) -> int:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # silence on zeros, e.g. the variance of one frame
            try:
                inputs = self.feature_extractor(
                    np.zeros(samples, dtype=np.float32),
                    sampling_rate=self.sampling_rate,
                    return_attention_mask=True,
                    return_tensors="pt",
                )
            except ValueError:  # too short to make a single feature frame
                return 0
        # The unmasked input, not the whole: a clip whose only feature row is masked (half a
        # log-mel pair) gives the model nothing it may attend to.
        return ctc_frames.output_frames(self.model, inputs["attention_mask"].sum(-1).tolist())[0]

    def transcribe(self, arrays: list[np.ndarray]) -> list[str]:
        """The text of each 1-D float array at the model's sampling rate, in order."""
        return self.transcribe_pieces([self.preprocessor.pieces(array) for array in arrays])

    def clip_logits(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The (frames, labels) float logits of each 1-D float array, as the LM decodes them."""
        return self.clip_outputs([self.preprocessor.pieces(array) for array in arrays], logits=True)

    def transcribe_pieces(self, clips: list[list[Piece]]) -> list[str]:
        """The text of each clip, given as its pieces, in order."""
        per_clip = self.clip_outputs(clips, logits=self.beam_search is not None)
        if self.beam_search is not None:
            return self.beam_search.decode(per_clip)
        # The pipeline's greedy decoding: the CTC tokenizer merges repeats, drops blanks
        # and turns the word delimiter into spaces.
        return [self.tokenizer.decode(ids, skip_special_tokens=False) for ids in per_clip]

    def clip_outputs(self, clips: list[list[Piece]], logits: bool) -> list[np.ndarray]:
        """Each clip's frames, its pieces joined: logits, or (greedy) token ids."""
        pieces = [piece for clip in clips for piece in clip]
        outputs = iter(self.run_model(pieces, logits))
        return [self.join([(next(outputs), piece.stride) for piece in clip]) for clip in clips]

    def join(self, outputs: list[tuple[np.ndarray, tuple[int, int, int] | None]]) -> np.ndarray:
        """A clip's frames from its pieces' outputs: every chunk loses the frames of its
        strides, so each kept frame saw context on both sides, as in the pipeline."""
        if outputs[0][1] is None:
            return outputs[0][0]
        kept = []
        for output, (samples, left, right) in outputs:
            # The pipeline's `rescale_stride`, to the same floating-point operations,
            # so that a frame count on a rounding edge comes out the same.
            frames = int(round(samples * (1 / self.preprocessor.samples_per_frame)))
            left_frames = int(round(left / samples * frames))
            right_frames = int(round(right / samples * frames))
            kept.append(output[left_frames : frames - right_frames])
        return np.concatenate(kept)

    def run_model(self, pieces: list[Piece], logits: bool) -> list[np.ndarray]:
        """Per piece, its frames: logits, or token ids for greedy decoding."""
        outputs: list[np.ndarray] = [None] * len(pieces)
        for batch in self.batches([piece.length for piece in pieces]):
            for index, output in zip(batch, self.forward([pieces[i] for i in batch], logits)):
                outputs[index] = output
        return outputs

    def batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices of the pieces that share a forward pass. Sorted by length, so that a
        batch pads little; without attention masks, only equal lengths share a batch, so
        that nothing is padded at all."""
        longest_first = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
        groups = [longest_first]
        if not self.pads_safely:
            groups = [list(group) for _, group in itertools.groupby(longest_first, key=lengths.__getitem__)]
        return [group[i : i + self.batch_size] for group in groups for i in range(0, len(group), self.batch_size)]

    @torch.inference_mode()
    def forward(self, pieces: list[Piece], logits: bool) -> list[np.ndarray]:
        inputs = self.feature_extractor.pad(
            [piece.features for piece in pieces], padding=True, return_attention_mask=True, return_tensors="pt"
        ).to(self.device)
        scores = self.engine(**inputs).logits
        # Each piece keeps the frames it has alone. (Its attention mask can be shorter: a
        # log-mel extractor that stacks frame pairs masks an incomplete last pair, yet
        # the pipeline keeps that pair's frame.)
        frames = ctc_frames.output_frames(self.model, [piece.length for piece in pieces])
        if logits:
            outputs = scores.float().cpu().numpy()
        else:
            outputs = scores.argmax(dim=-1).cpu().numpy()  # greedy, on the logits as the pipeline does
        return [output[:n] for output, n in zip(outputs, frames)]


