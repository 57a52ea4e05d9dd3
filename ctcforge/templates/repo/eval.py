#!/usr/bin/env python3
"""Word and character error rates of this repo's CTC model on a speech dataset.

    python eval.py --model_id ./ --dataset /data/cv-corpus-8.0 --config hy-AM --split test --log_outputs

What is yours and what is the contract: the arguments (parse_args) and the evaluation loop
are yours to adapt; the text rules are data, in `language_profile.json`, which training
and the LM read too; the files written (marked DO NOT CHANGE) are what model cards and
`ctcforge card` read. The machinery lives in `ctcforge_runtime/`, which `ctcforge update`
replaces, merging any edit of yours.

The command line and the output files follow the 2022 robust-speech-event eval.py, so
numbers in model cards of that time and of this repo compare like for like:

- `{dataset_id}_eval_results.txt` holds "WER: {wer}\\nCER: {cer}" (fractions);
- with --log_outputs, `log_{dataset_id}_predictions.txt` and `log_{dataset_id}_targets.txt`
  hold, for each evaluated clip, its row number in the split on one line and its text on
  the next.

It also writes `{dataset_id}_eval_summary.json`: the dataset, config and split, the WER
and CER, the decoder used ("greedy" or "lm", with the LM's alpha, beta, beam width and
the package that searched), the backend, the word split WER used, how many clips there
were, how many were evaluated, every skipped row with its reason, the seconds of audio
evaluated and the seconds the evaluation took. Every file is written atomically, the results file last; a run that
evaluates no clip writes nothing, so the files on disk always belong to one run.

What changed since 2022, and why:

- `--model_id ./` in a repo trained with --output_dir elsewhere evaluates the model that
  run saved, as its `training_run.json` records (saying so); a folder without weights
  stops at once, before any audio is read, with one line saying where the model is or to
  train first (`repo_files`, the one rule of where a repo's trained weights are);
- targets *and* predictions pass the repo's own normaliser (`text_normalizer`), the
  one training used; WER counts the words that normaliser defines (fugashi morphemes
  for Japanese, characters for languages written without spaces), as `error_rates`
  defines it for training, this file and LM tuning alike;
- a clip whose reference is empty, or whose audio is missing, empty, undecodable,
  truncated or too short for the model, is skipped with its reason and counted instead
  of stopping the run; stereo is averaged to mono and other sampling rates are resampled;
- clips are decoded by --num_workers processes while the model runs, read in windows of
  a few hundred and batched by length; models without attention masks (group-norm
  wav2vec2) batch only clips of equal length. Each prediction is the one the clip gets
  alone, the one `pipeline()` gives (`transcription`, which also computes log-mel
  features for all frames at once and cuts --chunk_length_s chunks as the pipeline does);
- the forward pass runs on torch, or with --backend onnxruntime on the model exported to
  ONNX at start-up (`acoustic_engines`; fp32, the same transcripts);
- a model with language adapters (MMS) is loaded with the adapter of --target_lang, by
  default the repo's language, as `from_pretrained(..., target_lang=...)` and
  `pipeline(..., model_kwargs={"target_lang": ...})` load it (`adapters`);
- the n-gram LM is applied by calling the beam search directly, because transformers
  deprecated its LM support (to be removed in v6): the pipeline's search (`beam_search`:
  pyctcdecode's `decode_beams`, best beam) run in C++ by ctc-beam-decoder, which gives
  pyctcdecode's text several times faster, over --num_workers threads; pyctcdecode itself,
  in forked processes, where that package cannot be loaded.
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
import json
import sys
import tempfile
import time
from collections import Counter
from typing import NamedTuple

import datasets
import torch

from ctcforge_runtime import text_normalizer
from ctcforge_runtime.acoustic_engines import FP32_BACKENDS
from ctcforge_runtime.atomic import write_text_atomically
from ctcforge_runtime.beam_search import BeamSearch, ctc_labels, has_language_model, load_beam_decoder
from ctcforge_runtime.error_rates import error_rates
from ctcforge_runtime.errors import CtcforgeError
from ctcforge_runtime.repo_files import (LANGUAGE_MODEL_DIR, TRAINING_RUN_FILE, eval_file_names, is_complete_evaluation,
                                         trained_model_folder)
from ctcforge_runtime.skip_reasons import EMPTY_AFTER_NORMALISATION, EMPTY_TRANSCRIPT
from ctcforge_runtime.speech_data import dataset_id, load_speech_dataset
from ctcforge_runtime.transcription import ClipReader, ReadClip, Transcriber, read_clips

# Clips read ahead, sorted by length and batched together: this many batches' worth.
WINDOW_BATCHES = 32


def parse_args() -> argparse.Namespace:
    """DO ADAPT FOR YOUR USE CASE: the arguments and their defaults."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_id", type=str, required=True, help="Model folder (e.g. ./) or Hub id.")
    parser.add_argument("--dataset", type=str, required=True,
                        help="Common Voice, OpenSLR, audiofolder or save_to_disk folder, or a Hub dataset id.")
    parser.add_argument("--config", type=str, default=None, help="Common Voice locale or Hub config.")
    parser.add_argument("--split", type=str, required=True, help="Split to evaluate: test, train+dev, ...")
    parser.add_argument("--text_column_name", type=str, default="sentence", help="Transcript column.")
    parser.add_argument("--chunk_length_s", type=float, default=None,
                        help="Cut longer clips into chunks of this length.")
    parser.add_argument("--stride_length_s", type=float, default=None,
                        help="Chunk overlap per side (default: a sixth).")
    parser.add_argument("--log_outputs", action="store_true", help="Also write every prediction and target.")
    parser.add_argument("--device", type=int, default=None,
                        help="GPU index, or -1 for the CPU (default: GPU 0 if any).")
    parser.add_argument("--batch_size", type=int, default=8, help="Clips (or chunks) per forward pass.")
    parser.add_argument("--backend", choices=FP32_BACKENDS, default="torch",
                        help="What runs the model's forward pass: torch, or onnxruntime (the model exported"
                        " to ONNX at start-up and run on the CPU, fp32: the same transcripts; needs onnx"
                        " and onnxruntime, in requirements.txt). Default: torch.")
    parser.add_argument("--decoder", choices=("auto", "greedy", "lm"), default="auto",
                        help="auto: the n-gram LM when the model folder has a non-empty language_model/, else greedy.")
    parser.add_argument("--num_workers", type=int, default=default_num_workers(),
                        help="Processes decoding audio, and workers running the LM beam search"
                        " (default: the CPUs this process may use, at most 16; 0 decodes in this process).")
    parser.add_argument("--max_samples", type=int, default=None, help="Evaluate only the first N rows.")
    parser.add_argument("--output_dir", type=str, default=".", help="Where the result and log files go.")
    parser.add_argument("--target_lang", type=str, default=None,
                        help="Models with language adapters: the adapter to load (adapter.<code>.safetensors); "
                        "default: this repo's language, language_profile.json's iso639_3.")
    args = parser.parse_args()
    if args.stride_length_s is not None and args.chunk_length_s is None:
        parser.error("--stride_length_s needs --chunk_length_s")
    if args.chunk_length_s is not None and args.chunk_length_s <= 0:
        parser.error("--chunk_length_s must be more than 0 seconds (leave it out to transcribe clips whole)")
    if args.stride_length_s is not None and args.stride_length_s < 0:
        parser.error("--stride_length_s must be 0 or more")
    if args.max_samples is not None and args.max_samples < 1:
        parser.error("--max_samples must be at least 1 (leave it out to evaluate the whole split)")
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    if args.num_workers < 0:
        parser.error("--num_workers must be 0 or more")
    return args


def default_num_workers() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(usable or 1, 16)


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


class Evaluation(NamedTuple):
    results: list[tuple[int, str, str]]  # (row, reference, prediction), in row order
    skipped: list[tuple[int, str]]  # (row, reason), in row order
    audio_seconds: float


def evaluate(dataset: datasets.Dataset, text_column: str, transcriber: Transcriber, normalizer,
             num_workers: int) -> Evaluation:
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
            skip(row, EMPTY_TRANSCRIPT)
        elif not normalizer.split_words(reference):
            skip(row, EMPTY_AFTER_NORMALISATION)
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


def summarise(evaluation: Evaluation, beam_search: BeamSearch | None, normalizer, seconds: float,
              args: argparse.Namespace, split_rows: int) -> dict:
    """DO NOT CHANGE: `ctcforge card` reads this summary.

    The run in numbers, as `{dataset_id}_eval_summary.json` records it (WER and CER are
    added once computed). The dataset is recorded as given, so that readers need not take
    it back apart from the file name, whose parts may hold "_" themselves. `complete` says
    whether the figures may stand for the split (`repo_files.is_complete_evaluation`): a run
    of --max_samples rows, or one that skipped many, is published only as what it is."""
    evaluated = len(evaluation.results)
    return {
        "dataset": args.dataset,
        "dataset_name": dataset_id(args.dataset, None, ""),  # the name's part of the file names
        "config": args.config,
        "split": args.split,
        "decoder": "lm" if beam_search else "greedy",
        "backend": args.backend,
        "lm": beam_search.settings if beam_search else None,
        "word_split": normalizer.word_split,
        "clips": len(evaluation.results) + len(evaluation.skipped),
        "evaluated": evaluated,
        "split_rows": split_rows,
        "complete": is_complete_evaluation(evaluated, split_rows),
        "skipped": dict(Counter(reason for _, reason in evaluation.skipped).most_common()),
        "skipped_rows": [[row, reason] for row, reason in evaluation.skipped],
        "audio_seconds": round(evaluation.audio_seconds, 3),
        "seconds": round(seconds, 3),
    }


def summary_line(summary: dict) -> str:
    line = (f"evaluated {summary['evaluated']} of {summary['clips']} clips"
            f" ({summary['audio_seconds']:.1f} s of audio in {summary['seconds']:.1f} s)")
    skipped = sum(summary["skipped"].values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in summary["skipped"].items())
    return f"{line}, skipped {skipped}" + (f": {reasons}" if reasons else "")


# ---------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------


def check_writable(output_dir: str) -> None:
    """Fails before the evaluation, not after it, when the results could not be written."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise CtcforgeError(f"--output_dir {output_dir} is not writable ({error.strerror}); choose another") from None


def log_results(results, summary: dict, name: str, args: argparse.Namespace) -> None:
    """DO NOT CHANGE: the file names and formats of 2022 (`repo_files.eval_file_names`),
    which model cards and `ctcforge card` compare against.

    The logs and the summary first and the results file last, so that a results file
    on disk always comes with the logs and the summary of the same run."""
    result_str = f"WER: {summary['wer']}\nCER: {summary['cer']}"
    print(result_str)
    files = eval_file_names(name)
    if args.log_outputs:
        predictions = "".join(f"{row}\n{prediction}\n" for row, _, prediction in results)
        targets = "".join(f"{row}\n{reference}\n" for row, reference, _ in results)
        write_text_atomically(os.path.join(args.output_dir, files.predictions), predictions)
        write_text_atomically(os.path.join(args.output_dir, files.targets), targets)
    write_text_atomically(os.path.join(args.output_dir, files.summary),
                          json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_text_atomically(os.path.join(args.output_dir, files.results), result_str)


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
        raise CtcforgeError(f"--decoder lm, but {os.path.join(model_id, LANGUAGE_MODEL_DIR)} is missing or empty")
    return decoder == "lm" or (decoder == "auto" and available)


def main() -> None:
    """The one place a CtcforgeError becomes a line on stderr and an exit code."""
    try:
        evaluate_as_asked(parse_args())
    except CtcforgeError as error:
        sys.exit(f"error: {error}")


def evaluate_as_asked(args: argparse.Namespace) -> None:
    check_writable(args.output_dir)
    # Before anything is loaded or read, so that a repo without weights fails at once.
    model_folder = trained_model_folder(args.model_id, os.path.dirname(os.path.realpath(__file__)))
    if model_folder != args.model_id:
        print(f"no weights in {args.model_id}; evaluating the trained model in {model_folder} "
              f"({TRAINING_RUN_FILE})", file=sys.stderr)
    # The LM stays the one in --model_id: `ctcforge lm` builds it in the repo, not in the
    # training run's output_dir.
    use_language_model = wants_language_model(args.decoder, args.model_id)
    # The repo's own normaliser: the one training used on its transcripts. Its profile
    # names the repo's language, the adapter an adapter model is evaluated with by default
    # (a model trained into another --output_dir has no language_profile.json beside it).
    normalizer = text_normalizer.load()
    transcriber = Transcriber(model_folder, choose_device(args.device), args.batch_size,
                              args.target_lang, normalizer.profile.get("iso639_3"))
    if transcriber.language:
        print(f"language adapter: {transcriber.language}")
    # A label for every output id, or every transcript would be shifted.
    ctc_labels(transcriber.tokenizer, transcriber.model.config.vocab_size, model_folder)
    if args.backend != "torch":
        if transcriber.device.type != "cpu":
            raise CtcforgeError(f"--backend {args.backend} runs on the CPU; add --device -1, or use --backend torch")
        try:
            transcriber.use_backend(args.backend)
        except ImportError as error:
            raise CtcforgeError(f"--backend {args.backend} needs {error.name}: pip install -r requirements.txt") \
                from None
    if args.chunk_length_s is not None:
        try:
            transcriber.preprocessor.use_chunks(args.chunk_length_s, args.stride_length_s)
        except ValueError as error:
            raise CtcforgeError(str(error)) from None
    if use_language_model:  # an alphabet.json of other labels, or a damaged KenLM file, stops here
        decoder = load_beam_decoder(args.model_id, transcriber.tokenizer, transcriber.model.config.vocab_size)
        transcriber.beam_search = BeamSearch(decoder, args.num_workers)
    print(f"decoder: {f'n-gram LM ({decoder.engine})' if transcriber.beam_search else 'greedy'}; "
          f"backend: {args.backend}")

    dataset = load_speech_dataset(args.dataset, args.config, args.split, text_column=args.text_column_name,
                                  sampling_rate=transcriber.sampling_rate)
    split_rows = len(dataset)
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    name = dataset_id(args.dataset, args.config, args.split)

    started = time.perf_counter()
    try:
        evaluation = evaluate(dataset, args.text_column_name, transcriber, normalizer, args.num_workers)
    except KeyboardInterrupt:
        raise CtcforgeError("interrupted; no result file was written or changed") from None
    finally:
        if transcriber.beam_search:
            transcriber.beam_search.close()
    summary = summarise(evaluation, transcriber.beam_search, normalizer, time.perf_counter() - started, args,
                        split_rows)
    print(summary_line(summary))
    if not evaluation.results:
        raise CtcforgeError("no clip could be evaluated; no result file was written")

    references = [reference for _, reference, _ in evaluation.results]
    predictions = [prediction for _, _, prediction in evaluation.results]
    summary["wer"], summary["cer"] = error_rates(references, predictions, normalizer)
    log_results(evaluation.results, summary, name, args)


if __name__ == "__main__":
    main()
