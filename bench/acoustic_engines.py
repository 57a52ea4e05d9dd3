"""Which engine should run the acoustic model's forward pass in eval.py: eager torch fp32,
ONNX Runtime fp32, ONNX Runtime int8 (MatMul weights) or torch dynamic int8, timed
interleaved in one run on the same clips, each through eval.py's own Transcriber (its
length-sorted batches, frame counts and greedy decoding), with the features made
beforehand so that the timings hold the forward pass and decoding only. Run by hand; it is
not a test.

    .venv/bin/python bench/acoustic_engines.py                         # synthesise, train tiny, measure
    .venv/bin/python bench/acoustic_engines.py --from-demo demo-output  # the demo's release and model
    .venv/bin/python bench/acoustic_engines.py --cases base --repeats 2

Cases:
- base: a wav2vec2 built from `Wav2Vec2Config()`'s defaults (12 x 768, group-norm feature
  encoder, so no attention mask and eval.py batches only clips of equal length; 94 M
  parameters), random weights, raw waveform;
- tiny: the `tiny` log-mel model trained by the repo's own training script.

For each engine: the seconds to build it (the export and quantisation are start-up cost in
eval.py), the median seconds of a pass over the clips, the speed-up over torch fp32 in the
same run, how many transcripts equal torch fp32's, and the CER against the references
beside torch fp32's (meaningless for the random base model, but its change is not).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from common import LANGUAGE, load_average, train_tiny

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(work: Path, clips: int, train_steps: int, from_demo: Path | None, log) -> dict[str, Path]:
    from ctcforge.synth import synthesize

    release, tiny = work / "cv", work / "tiny"
    if from_demo and not (tiny / "model.safetensors").is_file():
        release = from_demo.resolve() / "cv"
        shutil.copytree(from_demo.resolve() / "repo", tiny, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoint-*", "eval", "language_model", "lm_tuning"))
    elif from_demo:
        release = from_demo.resolve() / "cv"
    else:
        if not (release / LANGUAGE / "validated.tsv").is_file():
            log(f"synthesising {clips} clips")
            synthesize(LANGUAGE, release, clips, seed=0, progress=False)
        if not (tiny / "model.safetensors").is_file():
            log(f"training the tiny model for {train_steps} steps")
            train_tiny(tiny, release, train_steps)
    base = work / "base"
    if not (base / "model.safetensors").is_file():
        make_base(base, tiny)
        log("made the random-weight base model")
    return {"release": release, "tiny": tiny, "base": base}


def make_base(folder: Path, tiny: Path) -> None:
    """Wav2Vec2Config's defaults with the tiny repo's vocabulary and tokenizer, random weights."""
    import torch
    from transformers import AutoTokenizer, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    shutil.rmtree(folder, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    tokenizer.save_pretrained(folder)
    Wav2Vec2FeatureExtractor().save_pretrained(folder)
    config = Wav2Vec2Config(vocab_size=len(tokenizer.get_vocab()), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)


def clip_arrays(release: Path, count: int, sampling_rate: int) -> list[tuple[str, object]]:
    """(transcript, samples) of the first `count` clips of the release's test, dev and train splits."""
    from ctcforge.runtime.speech_data import decode_audio, load_speech_dataset

    clips = []
    for split in ("test", "dev", "train"):
        rows = load_speech_dataset(str(release), LANGUAGE, split, sampling_rate=sampling_rate)
        for row in rows:
            if len(clips) == count:
                return clips
            clips.append((row["sentence"], decode_audio(row["audio"], sampling_rate).samples))
    return clips


def measure_case(name: str, folder: Path, tiny: Path, release: Path, args, log) -> dict:
    import torch

    from ctcforge.lm_text import repo_normalizer
    from ctcforge.runtime.error_rates import error_rates
    from ctcforge.runtime.transcription import Transcriber  # eval.py's, the engines as this checkout has them

    normalizer = repo_normalizer(tiny)
    transcriber = Transcriber(str(folder), torch.device("cpu"), args.batch_size)
    engines, build_seconds = {}, {}
    for backend in args.backends:
        started = time.perf_counter()
        transcriber.use_backend(backend)
        build_seconds[backend] = time.perf_counter() - started
        engines[backend] = transcriber.engine
        log(f"{name}: built {backend} in {build_seconds[backend]:.1f} s")
    clips = clip_arrays(release, args.clips, transcriber.sampling_rate)
    references = [normalizer(text) for text, _ in clips]
    pieces = [transcriber.preprocessor.pieces(samples) for _, samples in clips]
    audio_seconds = sum(len(samples) for _, samples in clips) / transcriber.sampling_rate
    seconds = {backend: [] for backend in args.backends}
    texts = {}
    for backend in args.backends:  # warm-up, untimed: first-call allocations and kernel choices
        transcriber.engine = engines[backend]
        transcriber.transcribe_pieces(pieces[:2])
    before = load_average()
    for repeat in range(args.repeats):
        order = args.backends[repeat % len(args.backends):] + args.backends[: repeat % len(args.backends)]
        for backend in order:
            transcriber.engine = engines[backend]
            started = time.perf_counter()
            texts[backend] = [normalizer(text) for text in transcriber.transcribe_pieces(pieces)]
            seconds[backend].append(time.perf_counter() - started)
        log(f"{name}: repeat {repeat + 1}: " + ", ".join(f"{b} {seconds[b][-1]:.2f} s" for b in args.backends))
    after = load_average()
    reference_texts = texts["torch"]
    rows = {}
    for backend in args.backends:
        cer = error_rates(references, texts[backend], normalizer)[1]
        rows[backend] = {"build_seconds": round(build_seconds[backend], 2),
                         "median_seconds": round(statistics.median(seconds[backend]), 3),
                         "seconds": [round(s, 3) for s in seconds[backend]],
                         "speed_up": round(statistics.median(seconds["torch"]) / statistics.median(seconds[backend]), 3),
                         "equal_to_torch": sum(a == b for a, b in zip(texts[backend], reference_texts)),
                         "cer": round(cer, 4)}
    return {"clips": len(clips), "audio_seconds": round(audio_seconds, 1), "load_before": before,
            "load_after": after, "engines": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctcforge-engines"))
    parser.add_argument("--from-demo", type=Path, default=None, help="a finished demo's output folder")
    parser.add_argument("--cases", nargs="+", default=["base", "tiny"], choices=["base", "tiny"])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "onnxruntime-int8", "torch-int8"])
    parser.add_argument("--clips", type=int, default=48, help="clips timed per pass")
    parser.add_argument("--synth-clips", type=int, default=400, help="clips synthesised without --from-demo")
    parser.add_argument("--train-steps", type=int, default=600, help="tiny's training steps without --from-demo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if args.backends[0] != "torch":
        parser.error("the first backend must be torch, the one the others are compared with")
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = lambda message: print(message, flush=True)  # noqa: E731
    paths = prepare(args.workdir, args.synth_clips, args.train_steps, args.from_demo, log)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cases": {}}
    for case in args.cases:
        results["cases"][case] = measure_case(case, paths[case], paths["tiny"], paths["release"], args, log)
        case_result = results["cases"][case]
        print(f"\n{case}: {case_result['clips']} clips, {case_result['audio_seconds']} s of audio, load "
              f"{case_result['load_before']} -> {case_result['load_after']}")
        print(f"{'engine':<18}{'build s':>9}{'median s':>10}{'speed-up':>10}{'same text':>11}{'CER':>8}")
        for backend, row in case_result["engines"].items():
            print(f"{backend:<18}{row['build_seconds']:>9.1f}{row['median_seconds']:>10.2f}{row['speed_up']:>9.2f}x"
                  f"{row['equal_to_torch']:>6}/{case_result['clips']:<4}{row['cer']:>8.4f}")
    (args.workdir / "acoustic_engines.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
