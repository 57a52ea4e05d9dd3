#!/usr/bin/env python3
"""Word and character error rates of this repo's CTC model on a speech dataset.

    python eval.py --model_id ./ --dataset /data/cv-corpus-8.0 --config hy-AM --split test --log_outputs

The command line and the output files follow the 2022 robust-speech-event eval.py, so
numbers in model cards of that time and of this repo compare like for like:

- `{dataset_id}_eval_results.txt` holds "WER: {wer}\\nCER: {cer}" (fractions);
- with --log_outputs, `log_{dataset_id}_predictions.txt` and `log_{dataset_id}_targets.txt`
  hold, for each evaluated clip, its row number in the split on one line and its text on
  the next.

It also writes `{dataset_id}_eval_summary.json`: the decoder used ("greedy" or "lm", with
the LM's alpha, beta and beam width), the word split WER used, how many clips there were,
how many were evaluated, every skipped row with its reason, the seconds of audio
evaluated and the seconds the evaluation took. Every file is written atomically.

What changed since 2022, and why:

- `--model_id ./` in a repo trained with --output_dir elsewhere evaluates the model that
  run saved, as its `training_run.json` records (saying so); a folder without weights
  stops at once, before any audio is read, with one line saying where the model is or to
  train first;
- targets *and* predictions pass the repo's own normaliser (`text_normalizer.py`), the
  one training used; WER counts the words that normaliser defines (fugashi morphemes
  for Japanese, characters for languages written without spaces);
- a clip whose reference is empty, or whose audio is missing, empty, undecodable,
  truncated or too short for the model, is skipped with its reason and counted instead
  of stopping the run; stereo is averaged to mono and other sampling rates are resampled;
- --num_workers processes decode the audio and run the feature extractor while the
  model runs;
- clips are read in windows of a few hundred, sorted by length inside the window and
  batched, so padding stays small and memory stays bounded however long the split is.
  Models whose feature extractor returns no attention mask (group-norm wav2vec2) change
  their output when a clip is padded: for them only clips of equal length share a batch.
  Either way each prediction is the one the clip gets alone, the one `pipeline()` gives;
- log-mel features (w2v-BERT and the `tiny` model) are computed for all of a clip's
  frames at once instead of frame by frame, bit for bit what the feature extractor
  gives (checked when the model is loaded; otherwise its own code runs);
- the n-gram LM is applied by calling pyctcdecode directly, because transformers
  deprecated its LM support (to be removed in v6), in a pool of --num_workers forked
  processes; the search is the pipeline's (`decode_beams`, best beam);
- --chunk_length_s cuts long clips the way transformers' ASR pipeline does, here in
  this file so that chunks are batched like clips and the LM decoder gets the joined
  logits too.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Parallelism here comes from processes (audio workers running the feature
    # extractor, LM workers) and from torch's own threads. The feature extractor's numpy
    # matrix products would start OpenBLAS threads in every process, which keep spinning
    # after the product and steal the cores torch is using (on 2 cores this script ran
    # 1.7x slower, and pipeline() 3x). One BLAS thread per process, unless the caller
    # chose otherwise. It has to be set before numpy is first imported, and only when
    # run as a script, so that importing this file changes nothing for the importer.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import functools
import itertools
import json
import multiprocessing
import sys
import tempfile
import time
import warnings
from collections import Counter
from typing import NamedTuple

import datasets
import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer

import ctc_frames
import text_normalizer
from error_rates import error_rates
from speech_data import DatasetError, dataset_id, decode_audio, load_speech_dataset
from starting_weights import has_weights

LANGUAGE_MODEL_DIR = "language_model"
# Written by run_speech_recognition_ctc.py at the end of a run, into this folder and its
# --output_dir; its "output_dir" is where the trained weights went.
TRAINING_RUN_FILE = "training_run.json"
KENLM_EXTENSIONS = (".bin", ".binary", ".arpa")
# Clips read ahead, sorted by length and batched together: this many batches' worth.
WINDOW_BATCHES = 32
# A clip decoding to less than this share of the duration its header declares (and at
# least TRUNCATION_MIN_SECONDS less) is taken for a file cut short.
TRUNCATION_SHARE = 0.9
TRUNCATION_MIN_SECONDS = 0.1

# Why a clip is skipped; the summary counts clips by these.
EMPTY_REFERENCE = "empty reference"
REFERENCE_EMPTY_AFTER_NORMALISATION = "reference empty after normalisation"
MISSING_AUDIO = "missing audio file"
EMPTY_AUDIO_FILE = "empty audio file"
UNREADABLE_AUDIO = "unreadable audio"
TRUNCATED_AUDIO = "truncated audio"
TOO_SHORT = "audio too short for the model"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_id", type=str, required=True, help="Model folder (e.g. ./) or Hub id.")
    parser.add_argument(
        "--dataset",
        type=str,
        required=True,
        help="Common Voice, OpenSLR, audiofolder or save_to_disk folder, or a Hub dataset id.",
    )
    parser.add_argument("--config", type=str, default=None, help="Common Voice locale or Hub config.")
    parser.add_argument("--split", type=str, required=True, help="Split to evaluate: test, train+dev, ...")
    parser.add_argument("--text_column_name", type=str, default="sentence", help="Transcript column.")
    parser.add_argument(
        "--chunk_length_s", type=float, default=None, help="Cut longer clips into chunks of this length."
    )
    parser.add_argument(
        "--stride_length_s", type=float, default=None, help="Chunk overlap per side (default: a sixth)."
    )
    parser.add_argument("--log_outputs", action="store_true", help="Also write every prediction and target.")
    parser.add_argument(
        "--device", type=int, default=None, help="GPU index, or -1 for the CPU (default: GPU 0 if any)."
    )
    parser.add_argument("--batch_size", type=int, default=8, help="Clips (or chunks) per forward pass.")
    parser.add_argument(
        "--decoder",
        choices=("auto", "greedy", "lm"),
        default="auto",
        help="auto: the n-gram LM when the model folder has a non-empty language_model/, else greedy.",
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=default_num_workers(),
        help="Processes decoding audio, and processes running the LM beam search"
        " (default: the CPUs this process may use, at most 16; 0 decodes in this process).",
    )
    parser.add_argument("--max_samples", type=int, default=None, help="Evaluate only the first N rows.")
    parser.add_argument("--output_dir", type=str, default=".", help="Where the result and log files go.")
    args = parser.parse_args()
    if args.stride_length_s is not None and args.chunk_length_s is None:
        parser.error("--stride_length_s needs --chunk_length_s")
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    if args.num_workers < 0:
        parser.error("--num_workers must be 0 or more")
    return args


def default_num_workers() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(usable or 1, 16)


# ---------------------------------------------------------------------------------------
# Reading audio
# ---------------------------------------------------------------------------------------


class UnusableAudio(Exception):
    """A clip that cannot be evaluated; `reason` is one of the skip reasons above."""

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
            raise UnusableAudio(EMPTY_AUDIO_FILE, path)
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
    of this script's time on the `tiny` model; here the frames are one 2-D array and the
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
        script runs under."""
        row = self.rows[index]
        try:
            array = read_audio(self.cells[row]["audio"], self.audio)
        except UnusableAudio as unusable:
            return row, 0, [], unusable.reason, unusable.detail
        if len(array) < self.preprocessor.min_samples:
            detail = f"{len(array)} samples, the model needs {self.preprocessor.min_samples}"
            return row, len(array), [], TOO_SHORT, detail
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


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


class Transcriber:
    """Turns clips into text with a CTC model, giving each clip the text
    `pipeline("automatic-speech-recognition")` gives it."""

    def __init__(self, model_id: str, device: torch.device, batch_size: int):
        feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)
        self.tokenizer = AutoTokenizer.from_pretrained(model_id)
        self.model = AutoModelForCTC.from_pretrained(model_id).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        # Without attention masks, padding a clip changes what the model hears
        # (group-norm wav2vec2 models): such models only batch clips of equal length.
        self.pads_safely = bool(getattr(feature_extractor, "return_attention_mask", False))
        self.beam_search: BeamSearch | None = None
        # Input samples per output frame (320 for wav2vec2), the unit chunks align to.
        samples_per_frame = getattr(self.model.config, "inputs_to_logits_ratio", 1)
        install_fast_log_mel(feature_extractor)
        self.preprocessor = Preprocessor(feature_extractor, samples_per_frame)
        self.preprocessor.min_samples = self.shortest_transcribable_length()

    @property
    def feature_extractor(self):
        return self.preprocessor.feature_extractor

    @property
    def sampling_rate(self) -> int:
        return self.preprocessor.sampling_rate

    def check_alphabet(self, decoder) -> None:
        """pyctcdecode needs one label per model output; it would fail on the first clip."""
        alphabet_size = len(decoder._alphabet.labels)  # pyctcdecode 0.5 keeps it private
        if alphabet_size != self.model.config.vocab_size:
            raise ValueError(
                f"the LM decoder's alphabet has {alphabet_size} labels but the model writes "
                f"{self.model.config.vocab_size}; rebuild alphabet.json from vocab.json"
            )

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

    def transcribe_pieces(self, clips: list[list[Piece]]) -> list[str]:
        """The text of each clip, given as its pieces, in order."""
        pieces = [piece for clip in clips for piece in clip]
        outputs = iter(self.run_model(pieces))
        per_clip = [self.join([(next(outputs), piece.stride) for piece in clip]) for clip in clips]
        if self.beam_search is not None:
            return self.beam_search.decode(per_clip)
        # The pipeline's greedy decoding: the CTC tokenizer merges repeats, drops blanks
        # and turns the word delimiter into spaces.
        return [self.tokenizer.decode(ids, skip_special_tokens=False) for ids in per_clip]

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

    def run_model(self, pieces: list[Piece]) -> list[np.ndarray]:
        """Per piece, its frames: token ids for greedy decoding, logits for the LM."""
        outputs: list[np.ndarray] = [None] * len(pieces)
        for batch in self.batches([piece.length for piece in pieces]):
            for index, output in zip(batch, self.forward([pieces[i] for i in batch])):
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
    def forward(self, pieces: list[Piece]) -> list[np.ndarray]:
        inputs = self.feature_extractor.pad(
            [piece.features for piece in pieces], padding=True, return_attention_mask=True, return_tensors="pt"
        ).to(self.device)
        logits = self.model(**inputs).logits
        # Each piece keeps the frames it has alone. (Its attention mask can be shorter: a
        # log-mel extractor that stacks frame pairs masks an incomplete last pair, yet
        # the pipeline keeps that pair's frame.)
        frames = ctc_frames.output_frames(self.model, [piece.length for piece in pieces])
        if self.beam_search is None:
            outputs = logits.argmax(dim=-1).cpu().numpy()  # greedy, on the logits as the pipeline does
        else:
            outputs = logits.float().cpu().numpy()
        return [output[:n] for output, n in zip(outputs, frames)]


# ---------------------------------------------------------------------------------------
# The n-gram LM
# ---------------------------------------------------------------------------------------


def has_language_model(model_dir: str) -> bool:
    lm_dir = os.path.join(model_dir, LANGUAGE_MODEL_DIR)
    return os.path.isdir(lm_dir) and any(not f.startswith(".") for f in os.listdir(lm_dir))


def load_beam_decoder(model_dir: str, tokenizer, vocab_size: int):
    """pyctcdecode's beam search decoder with the folder's n-gram LM.

    pyctcdecode's own layout (`alphabet.json` beside `language_model/`, as
    `Wav2Vec2ProcessorWithLM.save_pretrained` wrote it) loads as it is. Otherwise the
    decoder is built from the model's vocabulary and the files in `language_model/`:
    one KenLM file, and `unigrams.txt` and `attrs.json` (alpha, beta, ...) when present.
    """
    from pyctcdecode import BeamSearchDecoderCTC, build_ctcdecoder

    if os.path.isfile(os.path.join(model_dir, "alphabet.json")):
        return BeamSearchDecoderCTC.load_from_dir(model_dir)
    lm_dir = os.path.join(model_dir, LANGUAGE_MODEL_DIR)
    kenlm_files = sorted(f for f in os.listdir(lm_dir) if f.endswith(KENLM_EXTENSIONS))
    if len(kenlm_files) != 1:
        expected = ", ".join(KENLM_EXTENSIONS)
        raise ValueError(f"{lm_dir} should hold one KenLM file ({expected}), not {kenlm_files}")
    unigrams = None
    if os.path.isfile(os.path.join(lm_dir, "unigrams.txt")):
        with open(os.path.join(lm_dir, "unigrams.txt"), encoding="utf-8") as file:
            unigrams = [line.strip() for line in file if line.strip()]
    attrs = {}
    if os.path.isfile(os.path.join(lm_dir, "attrs.json")):
        with open(os.path.join(lm_dir, "attrs.json"), encoding="utf-8") as file:
            attrs = json.load(file)
    if "score_boundary" in attrs:  # attrs.json and build_ctcdecoder name this one differently
        attrs["lm_score_boundary"] = attrs.pop("score_boundary")
    return build_ctcdecoder(
        ctc_labels(tokenizer, vocab_size),
        kenlm_model_path=os.path.join(lm_dir, kenlm_files[0]),
        unigrams=unigrams,
        **attrs,
    )


def ctc_labels(tokenizer, vocab_size: int) -> list[str]:
    """The model's output labels in id order, as pyctcdecode wants them: the blank
    (padding token) as "" and the word delimiter as " "."""
    token_by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    missing = [index for index in range(vocab_size) if index not in token_by_id]
    if missing:
        raise ValueError(f"the tokenizer has no token for output ids {missing[:5]}")
    labels = [token_by_id[index] for index in range(vocab_size)]
    delimiter = getattr(tokenizer, "word_delimiter_token", None)
    return ["" if t == tokenizer.pad_token else " " if t == delimiter else t for t in labels]


def best_beam_text(decoder, logits: np.ndarray) -> str:
    """What the pipeline's LM decoding returns: the text of `decode_beams`' best beam.
    (pyctcdecode's `decode`/`decode_batch` prune beam histories instead, which can end
    on another beam.) Module-level so that a process pool can run it."""
    return decoder.decode_beams(logits)[0][0]


class BeamSearch:
    """pyctcdecode's beam search over a pool of processes created once.

    The pool forks after the LM is loaded: pyctcdecode keeps the KenLM model in a class
    attribute that pickling skips, so the workers must inherit it rather than receive it.
    """

    def __init__(self, decoder, processes: int):
        from pyctcdecode.constants import DEFAULT_BEAM_WIDTH

        self.decoder = decoder
        self.beam_width = DEFAULT_BEAM_WIDTH  # the pipeline's, as decode_beams is called without one
        can_fork = "fork" in multiprocessing.get_all_start_methods()
        self.pool = multiprocessing.get_context("fork").Pool(processes) if processes > 1 and can_fork else None

    @property
    def settings(self) -> dict:
        language_model = self.decoder._language_model
        return {"alpha": language_model.alpha, "beta": language_model.beta, "beam_width": self.beam_width}

    def decode(self, logits_list: list[np.ndarray]) -> list[str]:
        if self.pool is None:
            return [best_beam_text(self.decoder, logits) for logits in logits_list]
        return self.pool.map(functools.partial(best_beam_text, self.decoder), logits_list)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


class Evaluation(NamedTuple):
    results: list[tuple[int, str, str]]  # (row, reference, prediction), in row order
    skipped: list[tuple[int, str]]  # (row, reason), in row order
    audio_seconds: float


def evaluate(
    dataset: datasets.Dataset, text_column: str, transcriber: Transcriber, normalizer, num_workers: int
) -> Evaluation:
    """Every clip of `dataset` transcribed, or skipped with a reason.

    Transcripts are read first, so that clips with an empty reference are never decoded.
    The others are decoded and preprocessed by worker processes and gathered in windows;
    each window is transcribed (in length-sorted batches) while the workers prepare the
    next, so memory holds about two windows of clips whatever the length of the split.
    """
    results: list[tuple[int, str, str]] = []
    skipped: list[tuple[int, str]] = []
    references: dict[int, str] = {}

    def skip(row: int, reason: str, detail: str = "") -> None:
        skipped.append((row, reason))
        print(f"skipping row {row}: {reason}{f' ({detail})' if detail else ''}", file=sys.stderr)

    for row, text in enumerate(dataset[text_column]):
        reference = normalizer(text or "")
        if not (text or "").strip():
            skip(row, EMPTY_REFERENCE)
        elif not normalizer.split_words(reference):
            skip(row, REFERENCE_EMPTY_AFTER_NORMALISATION)
        else:
            references[row] = reference

    window_size = WINDOW_BATCHES * transcriber.batch_size
    reader = ClipReader(dataset, list(references), transcriber.preprocessor)
    audio_samples = 0
    window: list[ReadClip] = []

    def transcribe_window() -> None:
        predictions = transcriber.transcribe_pieces([clip.pieces for clip in window])
        for clip, prediction in zip(window, predictions):
            results.append((clip.row, references[clip.row], normalizer(prediction)))
        print(f"transcribed {len(results)} of {len(references)} clips", file=sys.stderr)
        window.clear()

    for clip in read_clips(reader, num_workers, read_ahead=window_size):
        if clip.reason is not None:
            skip(clip.row, clip.reason, clip.detail)
            continue
        audio_samples += clip.samples
        window.append(clip)
        if len(window) == window_size:
            transcribe_window()
    if window:
        transcribe_window()
    return Evaluation(results, sorted(skipped), audio_samples / transcriber.sampling_rate)


def summarise(evaluation: Evaluation, beam_search: BeamSearch | None, normalizer, seconds: float) -> dict:
    """The run in numbers, as `{dataset_id}_eval_summary.json` records it."""
    return {
        "decoder": "lm" if beam_search else "greedy",
        "lm": beam_search.settings if beam_search else None,
        "word_split": normalizer.word_split,
        "clips": len(evaluation.results) + len(evaluation.skipped),
        "evaluated": len(evaluation.results),
        "skipped": dict(Counter(reason for _, reason in evaluation.skipped).most_common()),
        "skipped_rows": [[row, reason] for row, reason in evaluation.skipped],
        "audio_seconds": round(evaluation.audio_seconds, 3),
        "seconds": round(seconds, 3),
    }


def summary_line(summary: dict) -> str:
    line = (
        f"evaluated {summary['evaluated']} of {summary['clips']} clips"
        f" ({summary['audio_seconds']:.1f} s of audio in {summary['seconds']:.1f} s)"
    )
    skipped = sum(summary["skipped"].values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in summary["skipped"].items())
    return f"{line}, skipped {skipped}" + (f": {reasons}" if reasons else "")


# ---------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------


def write_atomically(path: str, text: str) -> None:
    """Write to a temporary file beside `path`, then rename, so that a reader never sees
    half a file and an interrupted run leaves the previous one intact."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it private (0600)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_summary(summary: dict, name: str, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_atomically(os.path.join(output_dir, f"{name}_eval_summary.json"), text)


def log_results(results, wer: float, cer: float, name: str, args: argparse.Namespace) -> None:
    """The logs first and the results file last, so that a results file on disk always
    comes with the logs of the same run."""
    result_str = f"WER: {wer}\nCER: {cer}"
    print(result_str)
    if args.log_outputs:
        predictions = "".join(f"{row}\n{prediction}\n" for row, _, prediction in results)
        targets = "".join(f"{row}\n{reference}\n" for row, reference, _ in results)
        write_atomically(os.path.join(args.output_dir, f"log_{name}_predictions.txt"), predictions)
        write_atomically(os.path.join(args.output_dir, f"log_{name}_targets.txt"), targets)
    write_atomically(os.path.join(args.output_dir, f"{name}_eval_results.txt"), result_str)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def choose_device(index: int | None) -> torch.device:
    if index is None:
        index = 0 if torch.cuda.is_available() else -1
    return torch.device("cpu") if index < 0 else torch.device(f"cuda:{index}")


def wants_language_model(decoder: str, model_id: str) -> bool:
    """--decoder lm, or auto with a non-empty language_model/ in a local model folder."""
    available = os.path.isdir(model_id) and has_language_model(model_id)
    if decoder == "lm" and not available:
        sys.exit(f"error: --decoder lm, but {os.path.join(model_id, LANGUAGE_MODEL_DIR)} is missing or empty")
    return decoder == "lm" or (decoder == "auto" and available)


def trained_model_folder(model_id: str) -> str:
    """The folder (or Hub id) to load the model from; exits with one line saying where the
    trained model is, or to train first, when a local `model_id` holds no weights.

    Training with --output_dir elsewhere (./out) leaves this repo without weights. When
    `model_id` is this repo (`--model_id ./`, as the README runs it), the repo's own
    training_run.json says where its model went, and that model is the one the user means:
    it is used, saying so. Any other folder's record is only named, not followed: a copied
    or stale record could point at another run's model, and evaluating it unasked would
    report numbers for the wrong model."""
    if not os.path.isdir(model_id):
        if model_id.startswith((".", "/", "~")):  # a path, not a Hub id
            sys.exit(f"error: --model_id {model_id}: no such folder")
        return model_id
    if has_weights(model_id):
        return model_id
    output_dir = recorded_output_dir(model_id)
    if output_dir and has_weights(output_dir):
        here = os.path.dirname(os.path.realpath(__file__))
        if os.path.realpath(model_id) == here:
            print(f"no weights in {model_id}; evaluating the trained model in {output_dir} "
                  f"({TRAINING_RUN_FILE})", file=sys.stderr)
            return output_dir
        sys.exit(f"error: the trained model is in {output_dir} ({TRAINING_RUN_FILE}); "
                 f"run eval.py --model_id {output_dir}")
    sys.exit(f"error: no trained weights in {model_id}: train first with "
             "python run_speech_recognition_ctc.py ... (see README.md, Training)")


def recorded_output_dir(folder: str) -> str | None:
    """The output_dir the folder's training_run.json records, or None without a readable one
    (the caller stops anyway: the folder holds no weights)."""
    try:
        with open(os.path.join(folder, TRAINING_RUN_FILE), encoding="utf-8") as file:
            output_dir = json.load(file).get("output_dir")
    except (OSError, ValueError, AttributeError):
        return None
    # Recorded absolute; a relative one (edited by hand) is read from the folder.
    return os.path.join(folder, output_dir) if isinstance(output_dir, str) and output_dir else None


def main() -> None:
    args = parse_args()
    # Before anything is loaded or read, so that a repo without weights fails at once.
    model_folder = trained_model_folder(args.model_id)
    # The LM stays the one in --model_id: `ctcforge lm` builds it in the repo, not in the
    # training run's output_dir.
    use_language_model = wants_language_model(args.decoder, args.model_id)
    transcriber = Transcriber(model_folder, choose_device(args.device), args.batch_size)
    if args.chunk_length_s is not None:
        try:
            transcriber.preprocessor.use_chunks(args.chunk_length_s, args.stride_length_s)
        except ValueError as error:
            sys.exit(f"error: {error}")
    if use_language_model:
        try:
            decoder = load_beam_decoder(args.model_id, transcriber.tokenizer, transcriber.model.config.vocab_size)
            transcriber.check_alphabet(decoder)
        except ValueError as error:
            sys.exit(f"error: {error}")
        transcriber.beam_search = BeamSearch(decoder, args.num_workers)
    print(f"decoder: {'n-gram LM (pyctcdecode)' if transcriber.beam_search else 'greedy'}")

    # The repo's own normaliser: the one training used on its transcripts.
    normalizer = text_normalizer.load()
    try:
        dataset = load_speech_dataset(
            args.dataset,
            args.config,
            args.split,
            text_column=args.text_column_name,
            sampling_rate=transcriber.sampling_rate,
        )
    except DatasetError as error:
        sys.exit(f"error: {error}")
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    name = dataset_id(args.dataset, args.config, args.split)

    started = time.perf_counter()
    try:
        evaluation = evaluate(dataset, args.text_column_name, transcriber, normalizer, args.num_workers)
    finally:
        if transcriber.beam_search:
            transcriber.beam_search.close()
    summary = summarise(evaluation, transcriber.beam_search, normalizer, time.perf_counter() - started)
    print(summary_line(summary))
    write_summary(summary, name, args.output_dir)
    if not evaluation.results:
        sys.exit("error: no clip could be evaluated")

    references = [reference for _, reference, _ in evaluation.results]
    predictions = [prediction for _, _, prediction in evaluation.results]
    wer, cer = error_rates(references, predictions, normalizer)
    log_results(evaluation.results, wer, cer, name, args)


if __name__ == "__main__":
    main()
