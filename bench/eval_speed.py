"""How fast a stamped repo's eval.py is, against a faithful port of the 2022 robust-speech-event
eval.py on the same model, clips and machine. Run by hand; it is not a test.

    .venv/bin/python bench/eval_speed.py                       # prepare (cached in --workdir), then measure
    .venv/bin/python bench/eval_speed.py --cases tiny lm --repeats 1
    .venv/bin/python bench/eval_speed.py --from-demo demo-output   # the demo's data and trained model

Cases:
- tiny: the `tiny` log-mel model, trained by the repo's own training script, greedy;
- base: a 12 x 768 wav2vec2 with XLS-R's layer norms and attention masks (so eval.py may
  batch it), random weights, greedy; also timed: its batched forward pass alone (the floor),
  on each backend;
- lm: the tiny model with an n-gram LM built by `ctcforge lm`, beam search in both; then
  eval.py alone on it greedy, with the LM searched in C++ (ctc-beam-decoder) and by
  pyctcdecode, each also run on one clip so that its start-up can be taken out.

In the greedy cases eval.py runs once per `--backends` entry (torch, and onnxruntime on the
model exported as eval.py exports it), each also on one clip for its start-up, and each
backend's transcripts are compared with torch's. `--max-samples N` measures the first N
clips of the split only (the baseline, eval.py and the floor alike).

The baseline (`baseline` sub-command, run in its own process) is the 2022 script's logic on
today's stack: `cast_column("audio", Audio(sampling_rate))`, `pipeline()` on the model folder,
`dataset.map` calling it one clip at a time, the 2022 `normalize_text` on the targets, and
WER/CER with jiwer where `load_metric` used to be. With the LM, the pipeline is the same; it
decodes with the LM because the repo declares `Wav2Vec2ProcessorWithLM` (checked: pipe.type).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import LANGUAGE, load_average, train_tiny

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # ctcforge and tests
CASES = ("tiny", "base", "lm")


# ---------------------------------------------------------------------------- the 2022 logic


def normalize_text(text: str) -> str:
    """The 2022 eval.py's target normalisation, as it was."""
    chars_to_ignore_regex = '[,?.!\\-\\;\\:"“%‘”�—’…–]'
    text = re.sub(chars_to_ignore_regex, "", text.lower())
    token_sequences_to_ignore = ["\n\n", "\n", "   ", "  "]
    for t in token_sequences_to_ignore:
        text = " ".join(text.split(t))
    return text


def baseline(args: argparse.Namespace) -> None:
    """The 2022 eval.py, ported: per-clip pipeline through datasets.map. Writes its result
    files into the working directory, and the timing and predictions to --report."""
    import datasets
    import jiwer
    import torch
    from datasets import Audio
    from transformers import AutoFeatureExtractor, pipeline

    from ctcforge.runtime.speech_data import read_common_voice

    started = time.perf_counter()
    folder = Path(args.dataset) / args.config
    parts = [read_common_voice(str(folder), part, "sentence") for part in args.split.split("+")]
    dataset = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if args.max_samples:
        dataset = dataset.select(range(args.max_samples))

    feature_extractor = AutoFeatureExtractor.from_pretrained(args.model_id)
    sampling_rate = feature_extractor.sampling_rate
    dataset = dataset.cast_column("audio", Audio(sampling_rate=sampling_rate))
    device = 0 if torch.cuda.is_available() else -1
    asr = pipeline("automatic-speech-recognition", model=args.model_id, device=device)

    def map_to_pred(batch):
        prediction = asr(batch["audio"]["array"], chunk_length_s=None, stride_length_s=None)
        batch["prediction"] = prediction["text"]
        batch["target"] = normalize_text(batch["sentence"])
        return batch

    loaded = time.perf_counter()
    result = dataset.map(map_to_pred, remove_columns=dataset.column_names)
    wer = jiwer.wer(list(result["target"]), list(result["prediction"]))
    cer = jiwer.cer(list(result["target"]), list(result["prediction"]))
    result_str = f"WER: {wer}\nCER: {cer}"
    print(result_str)
    dataset_id = "_".join([Path(args.dataset).name, args.config, args.split])
    with open(f"{dataset_id}_eval_results.txt", "w") as f:
        f.write(result_str)
    with open(f"log_{dataset_id}_predictions.txt", "w") as p, open(f"log_{dataset_id}_targets.txt", "w") as t:

        def write_to_file(batch, i):
            p.write(f"{i}" + "\n")
            p.write(batch["prediction"] + "\n")
            t.write(f"{i}" + "\n")
            t.write(batch["target"] + "\n")

        result.map(write_to_file, with_indices=True)
    finished = time.perf_counter()
    audio_seconds = sum(len(clip["audio"]["array"]) for clip in dataset) / sampling_rate
    report = {"pipe_type": asr.type, "wer": wer, "cer": cer, "predictions": list(result["prediction"]),
              "audio_seconds": audio_seconds, "seconds": finished - loaded, "setup_seconds": loaded - started}
    Path(args.report).write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------------------- the floor


def forward_floor(args: argparse.Namespace) -> None:
    """The model's forward passes alone over the clips, in eval.py's length-sorted batches:
    audio decoded and features extracted beforehand, nothing decoded after."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForCTC

    from ctcforge.runtime.acoustic_engines import acoustic_engine
    from ctcforge.runtime.speech_data import decode_audio, load_speech_dataset

    features = AutoFeatureExtractor.from_pretrained(args.model_id)
    model = AutoModelForCTC.from_pretrained(args.model_id).eval()
    dataset = load_speech_dataset(args.dataset, args.config, args.split, sampling_rate=features.sampling_rate)
    if args.max_samples:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    clips = sorted((decode_audio(clip["audio"], features.sampling_rate).samples for clip in dataset), key=len,
                   reverse=True)
    batches = [features(clips[i:i + args.batch_size], sampling_rate=features.sampling_rate, padding=True,
                        return_attention_mask=True, return_tensors="pt")
               for i in range(0, len(clips), args.batch_size)]
    with torch.inference_mode():
        engine = acoustic_engine(model, args.backend, dict(batches[0]))  # exported before the clock starts
        started = time.perf_counter()
        for inputs in batches:
            engine(**inputs)
    seconds = time.perf_counter() - started
    report = {"audio_seconds": sum(map(len, clips)) / features.sampling_rate, "seconds": seconds}
    Path(args.report).write_text(json.dumps(report), encoding="utf-8")


# ---------------------------------------------------------------------------- preparation


def prepare(work: Path, clips: int, train_steps: int, log, from_demo: Path | None = None) -> dict[str, Path]:
    """The release and the three repos, reused when already in `work`."""
    from ctcforge.synth import synthesize

    if from_demo and not (work / "tiny" / "model.safetensors").is_file():
        take_from_demo(from_demo, work, log)
    release = work / "cv"
    if not (release / LANGUAGE / "validated.tsv").is_file():
        log(f"synthesising {clips} clips")
        synthesize(LANGUAGE, release, clips, seed=0, progress=False)
    repos = {"tiny": work / "tiny", "base": work / "base", "lm": work / "tiny-lm"}
    if not (repos["tiny"] / "model.safetensors").is_file():
        log(f"training the tiny model for {train_steps} steps")
        train_tiny(repos["tiny"], release, train_steps)
    if not (repos["lm"] / "alphabet.json").is_file():
        add_language_model(repos["tiny"], repos["lm"], release, log)
    if not (repos["base"] / "model.safetensors").is_file():
        make_base(work, repos["base"], release, log)
    return {"release": release, **repos}


def take_from_demo(demo: Path, work: Path, log) -> None:
    """The release and trained `tiny` repo of a finished `ctcforge demo`, instead of
    synthesising and training: its repo (with its LM) is the lm case; a copy without the
    LM, and without the processor declaration that wires it into pipeline(), the tiny case."""
    release, repo = demo.resolve() / "cv", demo.resolve() / "repo"
    if not (repo / "language_model" / "lm.binary").is_file():
        raise SystemExit(f"{demo} holds no finished demo (no repo/language_model/lm.binary)")
    shutil.rmtree(work / "cv", ignore_errors=True)
    (work / "cv").symlink_to(release, target_is_directory=True)
    for name, ignored in (("tiny-lm", ("checkpoint-*", "eval", "*.log")),
                          ("tiny", ("checkpoint-*", "eval", "*.log", "language_model", "lm_tuning", "alphabet.json"))):
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(repo, work / name, ignore=shutil.ignore_patterns(*ignored))
    preprocessor = work / "tiny" / "preprocessor_config.json"
    config = json.loads(preprocessor.read_text(encoding="utf-8"))
    config.pop("processor_class", None)
    preprocessor.write_text(json.dumps(config, indent=2), encoding="utf-8")
    log(f"took the release and the trained tiny repo from {demo}")


def add_language_model(tiny: Path, repo: Path, release: Path, log) -> None:
    """A copy of the tiny repo with a 5-gram from the training split's text (`ctcforge lm`)."""
    from ctcforge.lm import TextSources, build_language_model

    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(tiny, repo, ignore=shutil.ignore_patterns("checkpoint-*", "eval*", "*.log"))
    build_language_model(repo, TextSources(dataset=str(release), config=LANGUAGE, split="train"),
                         progress=False, log=log)


def make_base(work: Path, repo: Path, release: Path, log) -> None:
    """A base-size (12 x 768) wav2vec2 laid out like XLS-R (layer norm, stable layer norm,
    attention masks), random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2Config, Wav2Vec2FeatureExtractor

    from ctcforge.new import new_repo

    architecture = work / "base-architecture"
    config = Wav2Vec2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                            feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                            feat_extract_activation="gelu")
    # A local base model must hold weights (`ctcforge new` refuses a folder without); the
    # repo's own random weights, of its vocabulary's size, are saved over them below.
    torch.manual_seed(0)
    AutoModelForCTC.from_config(config).save_pretrained(architecture)
    Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(architecture)
    shutil.rmtree(repo, ignore_errors=True)
    new_repo(LANGUAGE, repo, base_model=str(architecture), dataset=str(release))
    torch.manual_seed(0)
    AutoModelForCTC.from_config(AutoConfig.from_pretrained(repo)).save_pretrained(repo)
    log("made the random-weight base model")


# ---------------------------------------------------------------------------- measuring


def limited(max_samples: int | None) -> tuple[str, ...]:
    return ("--max_samples", str(max_samples)) if max_samples else ()


def run_baseline(repo: Path, release: Path, split: str, out: Path, blas_threads: int | None,
                 max_samples: int | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    report = out / "baseline.json"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    if blas_threads:
        environment["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "baseline", "--model_id", str(repo),
                    "--dataset", str(release), "--config", LANGUAGE, "--split", split, "--report", str(report),
                    *limited(max_samples)],
                   cwd=out, check=True, capture_output=True, env=environment)
    return {**json.loads(report.read_text(encoding="utf-8")), "wall": time.perf_counter() - started}


def run_eval(repo: Path, release: Path, split: str, decoder: str, out: Path, batch_size: int,
             num_workers: int | None, extra: tuple[str, ...] = ()) -> dict:
    from ctcforge.runtime.repo_files import RUNTIME_FOLDER

    out.mkdir(parents=True, exist_ok=True)
    # The current eval.py and runtime package, as `ctcforge new` would stamp them today.
    shutil.copy(ROOT / "ctcforge" / "templates" / "repo" / "eval.py", repo / "eval.py")
    (repo / RUNTIME_FOLDER).mkdir(exist_ok=True)
    for module in (ROOT / "ctcforge" / "runtime").glob("*.py"):
        shutil.copy(module, repo / RUNTIME_FOLDER / module.name)
    command = [sys.executable, "eval.py", "--model_id", "./", "--dataset", str(release), "--config", LANGUAGE,
               "--split", split, "--decoder", decoder, "--log_outputs", "--output_dir", str(out),
               "--batch_size", str(batch_size), *extra]
    if num_workers is not None:
        command += ["--num_workers", str(num_workers)]
    started = time.perf_counter()
    subprocess.run(command, cwd=repo, check=True, capture_output=True)
    wall = time.perf_counter() - started
    name = f"{release.name}_{LANGUAGE}_{split}"
    summary = json.loads((out / f"{name}_eval_summary.json").read_text(encoding="utf-8"))
    predictions = (out / f"log_{name}_predictions.txt").read_text(encoding="utf-8").split("\n")
    targets = (out / f"log_{name}_targets.txt").read_text(encoding="utf-8").split("\n")
    results = (out / f"{name}_eval_results.txt").read_text(encoding="utf-8").split("\n")
    return {**summary, "wall": wall, "predictions": predictions[1::2][: summary["evaluated"]],
            "targets": targets[1::2][: summary["evaluated"]],
            "wer": float(results[0].split(": ")[1]), "cer": float(results[1].split(": ")[1])}


def run_floor(repo: Path, release: Path, split: str, out: Path, batch_size: int, backend: str = "torch",
              max_samples: int | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    report = out / "floor.json"
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "floor", "--model_id", str(repo),
                    "--dataset", str(release), "--config", LANGUAGE, "--split", split, "--report", str(report),
                    "--batch_size", str(batch_size), "--backend", backend, *limited(max_samples)],
                   check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"})
    return json.loads(report.read_text(encoding="utf-8"))


def scored_like_eval(repo: Path, baseline_predictions: list[str], ours: dict) -> tuple[int, float, float]:
    """The baseline's predictions through the repo's normaliser and eval.py's scoring: how
    many equal eval.py's, and their WER and CER. (The 2022 script normalised only the
    targets, and with its own character list, so its printed WER is not comparable.)"""
    from tests.repo_script import repo_script_module

    with repo_script_module(repo, "eval.py") as evaluation:
        normalize = evaluation.text_normalizer.load()
        predictions = [normalize(text) for text in baseline_predictions]
        wer, cer = evaluation.error_rates(ours["targets"], predictions, normalize)
    return sum(b == o for b, o in zip(predictions, ours["predictions"])), wer, cer


def measure(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    set_up = time.perf_counter()
    paths = prepare(work, args.clips, args.train_steps, log=lambda message: print(message, flush=True),
                    from_demo=args.from_demo)
    print(f"set-up: {time.perf_counter() - set_up:.1f} s")
    release = paths["release"]
    for case in args.cases:
        repo, decoder = paths[case], "lm" if case == "lm" else "greedy"
        # torch first, as what the others are compared with; the LM case's decoders come below.
        backends = ["torch"] + ([b for b in args.backends if b != "torch"] if case != "lm" else [])
        for repeat in range(1, args.repeats + 1):
            runs = work / "runs" / f"{case}-{repeat}"
            shutil.rmtree(runs, ignore_errors=True)
            before = load_average()
            base = run_baseline(repo, release, args.split, runs / "baseline", args.baseline_blas_threads,
                                args.max_samples)
            ours = {backend: run_eval(repo, release, args.split, decoder, runs / f"eval-{backend}", args.batch_size,
                                      args.num_workers, extra=("--backend", backend, *limited(args.max_samples)))
                    for backend in backends}
            one_clip = {backend: run_eval(repo, release, args.split, decoder, runs / f"one-{backend}",
                                          args.batch_size, args.num_workers,
                                          extra=("--backend", backend, "--max_samples", "1"))
                        for backend in backends}
            after = load_average()
            expected_type = "ctc_with_lm" if case == "lm" else "ctc"
            assert base["pipe_type"] == expected_type, f"baseline pipeline is {base['pipe_type']}"
            torch_run = ours["torch"]
            assert len(torch_run["predictions"]) == len(base["predictions"]), "clip counts differ"
            same, base_wer, base_cer = scored_like_eval(repo, base["predictions"], torch_run)
            base_speed = base["audio_seconds"] / base["seconds"]
            print(f"\n{case} #{repeat} ({torch_run['evaluated']} clips, {torch_run['audio_seconds']:.1f} s of audio; "
                  f"load {before} before, {after} after)")
            print(f"  baseline: {base_speed:8.1f} audio-s/s  ({base['seconds']:.1f} s; whole run {base['wall']:.1f} s)"
                  f"  WER {base['wer']:.4f}  CER {base['cer']:.4f}  pipe.type {base['pipe_type']}")
            for backend, run in ours.items():
                speed = run["audio_seconds"] / run["seconds"]
                equal = sum(a == b for a, b in zip(run["predictions"], torch_run["predictions"]))
                print(f"  eval.py {backend:<12} {speed:8.1f} audio-s/s  ({run['seconds']:.1f} s; whole run "
                      f"{run['wall']:.1f} s, one-clip run {one_clip[backend]['wall']:.1f} s, start-up taken out "
                      f"{without_start_up(run, one_clip[backend]):8.1f} audio-s/s)  WER {run['wer']:.4f}  "
                      f"CER {run['cer']:.4f}  decoder {run['decoder']}; {speed / base_speed:.2f}x the baseline, "
                      f"text equal to torch's for {equal}/{len(run['predictions'])} clips")
            print(f"  baseline's text equal to eval.py's for {same}/{len(torch_run['predictions'])} clips; baseline "
                  f"scored as eval.py scores: WER {base_wer:.4f}  CER {base_cer:.4f}")
            if case == "base":
                for backend in backends:
                    speed = ours[backend]["audio_seconds"] / ours[backend]["seconds"]
                    for batch_size in sorted({args.batch_size, 1}, reverse=True):
                        floor = run_floor(repo, release, args.split, runs / f"floor-{backend}-{batch_size}",
                                          batch_size, backend, args.max_samples)
                        floor_speed = floor["audio_seconds"] / floor["seconds"]
                        print(f"  forward pass alone, {backend}, batches of {batch_size}: {floor_speed:8.1f} "
                              f"audio-s/s ({floor['seconds']:.1f} s); eval.py {backend} takes "
                              f"{floor_speed / speed:.2f}x its time")
    if "lm" in args.cases:
        measure_decoders(args, paths, work)


# ---------------------------------------------------------------------------- the LM decoders


@contextlib.contextmanager
def decoder_package(engine: str, work: Path):
    """eval.py's LM search run by `engine`. pyctcdecode is forced as on a machine where
    ctc-beam-decoder cannot load: a module of that name that fails to import comes first
    on the PYTHONPATH the eval.py processes inherit."""
    from ctcforge.runtime.beam_search import PYTHON_ENGINE

    if engine != PYTHON_ENGINE:
        yield
        return
    shadow = work / "without-ctc-beam-decoder"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "ctc_beam_decoder.py").write_text('raise ImportError("hidden by bench/eval_speed.py")\n')
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadow), saved]))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved


def without_start_up(full: dict, one_clip: dict) -> float:
    """Audio seconds per second of what the full run took beyond a one-clip run: imports,
    model and LM loading and the pools' start taken out."""
    return (full["audio_seconds"] - one_clip["audio_seconds"]) / (full["wall"] - one_clip["wall"])


def measure_decoders(args: argparse.Namespace, paths: dict[str, Path], work: Path) -> None:
    """The lm case's repo through eval.py greedy, with the LM searched in C++ and with it
    searched by pyctcdecode, interleaved; each also as a one-clip run, for its start-up."""
    from ctcforge.runtime.beam_search import CPP_ENGINE, PYTHON_ENGINE

    repo, release = paths["lm"], paths["release"]
    rows = (("greedy", None), ("lm", CPP_ENGINE), ("lm", PYTHON_ENGINE))
    for repeat in range(1, args.repeats + 1):
        print(f"\nLM decoders #{repeat}, eval.py on the lm case's repo")
        predictions = {}
        for decoder, engine in rows:
            runs = work / "runs" / f"decoders-{repeat}" / (engine or decoder)
            shutil.rmtree(runs, ignore_errors=True)
            with decoder_package(engine, work):
                before = load_average()
                full = run_eval(repo, release, args.split, decoder, runs / "all", args.batch_size, args.num_workers,
                                extra=limited(args.max_samples))
                one = run_eval(repo, release, args.split, decoder, runs / "one", args.batch_size, args.num_workers,
                               extra=("--max_samples", "1"))
                after = load_average()
            if engine is not None:
                assert full["lm"]["engine"] == engine, f"eval.py decoded with {full['lm']['engine']}"
            predictions[engine or decoder] = full["predictions"]
            print(f"  {engine or decoder:<17} {full['audio_seconds'] / full['seconds']:8.1f} audio-s/s "
                  f"({full['seconds']:.1f} s); whole run {full['wall']:.1f} s, one-clip run {one['wall']:.1f} s, "
                  f"start-up taken out {without_start_up(full, one):8.1f} audio-s/s; WER {full['wer']:.4f}; "
                  f"load {before} before, {after} after")
        same = sum(c == p for c, p in zip(predictions[CPP_ENGINE], predictions[PYTHON_ENGINE]))
        print(f"  same LM text for {same}/{len(predictions[CPP_ENGINE])} clips")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for name in ("baseline", "floor"):
        inner = sub.add_parser(name)
        for option in ("--model_id", "--dataset", "--config", "--split", "--report"):
            inner.add_argument(option, required=True)
        inner.add_argument("--max_samples", type=int, default=None)
        inner.add_argument("--batch_size", type=int, default=8)
        inner.add_argument("--backend", default="torch")
    parser.add_argument("--workdir", default="/tmp/ctcforge-eval-bench", help="reused between runs")
    parser.add_argument("--clips", type=int, default=1500, help="clips to synthesise")
    parser.add_argument("--train-steps", type=int, default=1500, help="training steps of the tiny model")
    parser.add_argument("--split", default="dev+test", help="the clips measured")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"],
                        help="eval.py's --backend values measured in the greedy cases (torch is always run)")
    parser.add_argument("--max-samples", type=int, default=None, help="measure only the first N clips of --split")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=None, help="eval.py's --num_workers (default: its own)")
    parser.add_argument("--baseline-blas-threads", type=int, default=None,
                        help="OPENBLAS_NUM_THREADS for the baseline (default: unset, as the 2022 script ran)")
    parser.add_argument("--from-demo", type=Path, default=None,
                        help="take the release and the trained tiny model from a finished `ctcforge demo` folder")
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    if args.command == "baseline":
        baseline(args)
    elif args.command == "floor":
        forward_floor(args)
    elif args.prepare_only:
        prepare(Path(args.workdir), args.clips, args.train_steps, log=lambda message: print(message, flush=True),
                from_demo=args.from_demo)
    else:
        measure(args)


if __name__ == "__main__":
    main()
