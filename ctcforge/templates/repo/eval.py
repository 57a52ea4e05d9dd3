#!/usr/bin/env python3
"""Word and character error rates of this repo's CTC model on a speech dataset.

    python eval.py --model_id ./ --dataset /data/cv-corpus-8.0 --config hy-AM --split test --log_outputs

The command line and the output files follow the 2022 robust-speech-event eval.py, so
numbers in model cards of that time and of this repo compare like for like:

- `{dataset_id}_eval_results.txt` holds "WER: {wer}\\nCER: {cer}" (fractions);
- with --log_outputs, `log_{dataset_id}_predictions.txt` and `log_{dataset_id}_targets.txt`
  hold, for each clip, its row number in the split on one line and its text on the next.

What changed since 2022, and why:

- targets *and* predictions pass the repo's own normaliser (`text_normalizer.py`), the
  one training used; WER counts the words that normaliser defines (fugashi morphemes
  for Japanese, characters for languages written without spaces);
- clips with an empty reference after normalisation, or with audio that cannot be
  decoded, are skipped with a reason and counted instead of stopping the run;
- clips are batched when the feature extractor returns attention masks (padding then
  changes nothing); models without them see one clip at a time;
- the n-gram LM is applied by calling pyctcdecode directly, because transformers
  deprecated its LM support (to be removed in v6);
- --chunk_length_s cuts long clips the way transformers' ASR pipeline does, here in
  this file so that the LM decoder gets the joined log-probabilities too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter

import jiwer
import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer

import text_normalizer
from speech_data import DatasetError, dataset_id, load_speech_dataset

LANGUAGE_MODEL_DIR = "language_model"
KENLM_EXTENSIONS = (".bin", ".binary", ".arpa")


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
    parser.add_argument("--max_samples", type=int, default=None, help="Evaluate only the first N rows.")
    parser.add_argument("--output_dir", type=str, default=".", help="Where the result and log files go.")
    args = parser.parse_args()
    if args.stride_length_s is not None and args.chunk_length_s is None:
        parser.error("--stride_length_s needs --chunk_length_s")
    return args


class Transcriber:
    """Turns 1-D float arrays at the model's sampling rate into text with a CTC model."""

    def __init__(self, model_id: str, device: torch.device, batch_size: int):
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)
        self.tokenizer = AutoTokenizer.from_pretrained(model_id)
        self.model = AutoModelForCTC.from_pretrained(model_id).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        # Without attention masks, padding a clip changes what the model hears
        # (group-norm wav2vec2 models); such models get one clip per forward pass.
        self.pads_safely = bool(getattr(self.feature_extractor, "return_attention_mask", False))
        self.beam_decoder = None
        self.chunk_samples = self.stride_samples = None

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def samples_per_frame(self) -> int:
        """Input samples per output frame (320 for wav2vec2), the unit chunks are aligned to."""
        return getattr(self.model.config, "inputs_to_logits_ratio", 1)

    def use_chunks(self, chunk_length_s: float, stride_length_s: float | None) -> None:
        """Cut clips longer than `chunk_length_s` into overlapping chunks, with the
        arithmetic of transformers' ASR pipeline (stride defaults to a sixth of the chunk,
        both rounded to whole output frames)."""
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        self.chunk_samples = self.whole_frames(chunk_length_s)
        self.stride_samples = self.whole_frames(stride_length_s)
        if self.chunk_samples <= 2 * self.stride_samples:
            raise ValueError("--chunk_length_s must be more than twice --stride_length_s")

    def whole_frames(self, seconds: float) -> int:
        frames = round(seconds * self.sampling_rate / self.samples_per_frame)
        return int(frames * self.samples_per_frame)

    def use_language_model(self, beam_decoder) -> None:
        alphabet_size = len(beam_decoder._alphabet.labels)  # pyctcdecode 0.5 keeps it private
        if alphabet_size != self.model.config.vocab_size:
            raise ValueError(
                f"the LM decoder's alphabet has {alphabet_size} labels but the model writes "
                f"{self.model.config.vocab_size}; rebuild alphabet.json from vocab.json"
            )
        self.beam_decoder = beam_decoder

    def too_short(self, array: np.ndarray) -> bool:
        """True for audio too short to give the model a single output frame."""
        if len(array) == 0:
            return True
        if self.model.main_input_name != "input_values":
            return False  # feature-based models: the feature extractor decides
        frames = self.model._get_feat_extract_output_lengths(torch.tensor(len(array)))
        return int(frames) < 1

    def transcribe(self, arrays: list[np.ndarray]) -> list[str]:
        return [self.decode(log_probs) for log_probs in self.log_probs(arrays)]

    def decode(self, log_probs: np.ndarray) -> str:
        if self.beam_decoder is not None:
            return self.beam_decoder.decode(log_probs)
        # The CTC tokenizer merges repeats, drops blanks and turns "|" into spaces.
        return self.tokenizer.decode(log_probs.argmax(axis=-1).tolist())

    def log_probs(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Per clip, a (frames, vocab) array of log-probabilities, in the order given.
        Clips up to one chunk long are batched together; longer ones are chunked."""
        is_long = [self.chunk_samples is not None and len(a) > self.chunk_samples for a in arrays]
        short_clips = iter(self.forward([a for a, long in zip(arrays, is_long) if not long]))
        return [self.chunked_log_probs(a) if long else next(short_clips) for a, long in zip(arrays, is_long)]

    def forward(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Log-probabilities of each array, in batches, cut to the array's own length."""
        per_pass = self.batch_size if self.pads_safely else 1
        results: list[np.ndarray] = []
        for start in range(0, len(arrays), per_pass):
            results += self.forward_batch(arrays[start : start + per_pass])
        return results

    @torch.inference_mode()
    def forward_batch(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        inputs = self.feature_extractor(
            arrays, sampling_rate=self.sampling_rate, padding=True, return_tensors="pt"
        )
        logits = self.model(**inputs.to(self.device)).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        if "attention_mask" not in inputs:
            return list(log_probs)
        # Frames computed from padding are no part of the clip.
        frames = self.model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1).cpu())
        return [clip[:n] for clip, n in zip(log_probs, frames.tolist())]

    def chunked_log_probs(self, array: np.ndarray) -> np.ndarray:
        """A long clip's log-probabilities from overlapping chunks.

        Each chunk but the first drops the frames of its left stride and each but the last
        those of its right stride, so every kept frame saw context on both sides; the kept
        frames are joined in order. Same cuts as transformers' ASR pipeline.
        """
        step = self.chunk_samples - 2 * self.stride_samples
        chunks, strides = [], []
        for start in range(0, len(array), step):
            chunk = array[start : start + self.chunk_samples]
            is_last = start + self.chunk_samples >= len(array)
            left = 0 if start == 0 else self.stride_samples
            right = 0 if is_last else self.stride_samples
            if len(chunk) > left:
                chunks.append(chunk)
                strides.append((len(chunk), left, right))
            if is_last:
                break
        kept = []
        for log_probs, (samples, left, right) in zip(self.forward(chunks), strides):
            frames = round(samples / self.samples_per_frame)
            left_frames = round(left / samples * frames)
            right_frames = round(right / samples * frames)
            kept.append(log_probs[left_frames : frames - right_frames])
        return np.concatenate(kept)


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


def evaluate(dataset, text_column: str, transcriber: Transcriber, normalizer, batch_size: int):
    """(row, reference, prediction) for every clip that can be evaluated, and a count of
    the others by reason. Rows are read one at a time because `datasets` decodes audio
    on access: a broken file then costs one clip, not the run."""
    results: list[tuple[int, str, str]] = []
    skipped: Counter[str] = Counter()
    pending: list[tuple[int, str, np.ndarray]] = []

    def skip(row: int, reason: str, detail: str = "") -> None:
        skipped[reason] += 1
        print(f"skipping row {row}: {reason}{f' ({detail})' if detail else ''}", file=sys.stderr)

    def transcribe_pending() -> None:
        predictions = transcriber.transcribe([array for _, _, array in pending])
        for (row, reference, _), prediction in zip(pending, predictions):
            results.append((row, reference, normalizer(prediction)))
        pending.clear()

    # Transcripts first, so that clips with an empty reference are never decoded.
    for row, text in enumerate(dataset[text_column]):
        reference = normalizer(text or "")
        if not normalizer.split_words(reference):
            skip(row, "empty reference after normalisation")
            continue
        try:
            array = dataset[row]["audio"]["array"]
        except Exception as error:  # torchcodec raises several types for broken files
            skip(row, "unreadable audio", f"{type(error).__name__}: {error}".splitlines()[0])
            continue
        if transcriber.too_short(array):
            skip(row, "audio too short for the model")
            continue
        pending.append((row, reference, array))
        if len(pending) == batch_size:
            transcribe_pending()
    if pending:
        transcribe_pending()
    return results, skipped


def error_rates(references: list[str], predictions: list[str], normalizer) -> tuple[float, float]:
    """WER over the normaliser's words; CER over the normalised text, without spaces where
    the language writes none (so that the spaces WER needs are not counted as characters)."""
    wer = jiwer.wer(
        [normalizer.words_joined(t) for t in references], [normalizer.words_joined(t) for t in predictions]
    )
    if normalizer.word_split == "char":
        references = [t.replace(" ", "") for t in references]
        predictions = [t.replace(" ", "") for t in predictions]
    return wer, jiwer.cer(references, predictions)


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


def log_results(results, wer: float, cer: float, args: argparse.Namespace) -> None:
    name = dataset_id(args.dataset, args.config, args.split)
    result_str = f"WER: {wer}\nCER: {cer}"
    print(result_str)
    os.makedirs(args.output_dir, exist_ok=True)
    write_atomically(os.path.join(args.output_dir, f"{name}_eval_results.txt"), result_str)
    if args.log_outputs:
        predictions = "".join(f"{row}\n{prediction}\n" for row, _, prediction in results)
        targets = "".join(f"{row}\n{reference}\n" for row, reference, _ in results)
        write_atomically(os.path.join(args.output_dir, f"log_{name}_predictions.txt"), predictions)
        write_atomically(os.path.join(args.output_dir, f"log_{name}_targets.txt"), targets)


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


def main() -> None:
    args = parse_args()
    transcriber = Transcriber(args.model_id, choose_device(args.device), args.batch_size)
    if args.chunk_length_s is not None:
        try:
            transcriber.use_chunks(args.chunk_length_s, args.stride_length_s)
        except ValueError as error:
            sys.exit(f"error: {error}")
    if wants_language_model(args.decoder, args.model_id):
        vocab_size = transcriber.model.config.vocab_size
        transcriber.use_language_model(load_beam_decoder(args.model_id, transcriber.tokenizer, vocab_size))
    print(f"decoder: {'n-gram LM (pyctcdecode)' if transcriber.beam_decoder else 'greedy'}")

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

    results, skipped = evaluate(dataset, args.text_column_name, transcriber, normalizer, args.batch_size)
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
    summary = f"evaluated {len(results)} clips, skipped {sum(skipped.values())}"
    print(f"{summary} ({reasons})" if reasons else summary)
    if not results:
        sys.exit("error: no clip could be evaluated")

    references = [reference for _, reference, _ in results]
    predictions = [prediction for _, _, prediction in results]
    wer, cer = error_rates(references, predictions, normalizer)
    log_results(results, wer, cer, args)


if __name__ == "__main__":
    main()
