#!/usr/bin/env python
"""Training throughput of a stamped repo's run_speech_recognition_ctc.py against a plain
transformers.Trainer baseline on the same model, clips and settings.

Run by hand (not a test), from the project root:

    .venv/bin/python bench/train_throughput.py [--steps 40] [--clips 160] [--batch-size 8]
                                               [--repeats 2] [--workdir DIR]

It synthesises a hy-AM release (seed 0) with ctcforge.synth, stamps a `tiny` repo from it
(ctcforge.new.new_repo with --dataset), then runs, interleaved (a, b, a, b, ...):

  a) script:   the repo's own run_speech_recognition_ctc.py in a subprocess
               (--use_cpu --report_to none --dataloader_num_workers 0, no eval,
               --save_strategy no); its train_runtime comes from train_results.json.
  b) baseline: a fresh subprocess of this file that builds the same tiny config
               (AutoConfig from the repo, the script's default CTC settings, the same
               seed, AutoModelForCTC.from_config) and trains it with a plain
               transformers.Trainer and a minimal padding collator, nothing else; its
               train_runtime comes from trainer.train()'s metrics.

The baseline's clips are prepared once, before any run (feature extractor and tokenizer
from the repo, transcripts through the repo's text_normalizer), and loaded by each
baseline run. clips/s = steps x batch size / train_runtime, so data preparation is
excluded from both; the script's whole wall time (start-up and preparation included) is
shown beside it.

With `--threads-under-load BUSY`, it compares instead the script with `--torch_threads 1`
and with `--torch_threads 2`, interleaved, each run sharing the cores with BUSY processes
that do nothing but spin (started before the run, stopped after it): how torch's thread
count fares on a machine other jobs are using, the choice ctcforge_runtime/cpu_threads.py makes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LANGUAGE = "hy-AM"
SYNTH_SEED = 0
TRAIN_SEED = 42
LEARNING_RATE = 1e-3
SCRIPT = "run_speech_recognition_ctc.py"

# The script's ModelArguments defaults, which it writes into the config before building
# the model; the baseline writes the same so both train the same network.
SCRIPT_CTC_DEFAULTS = {
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "hidden_dropout": 0.0,
    "final_dropout": 0.0,
    "mask_time_prob": 0.05,
    "mask_time_length": 10,
    "mask_feature_prob": 0.0,
    "mask_feature_length": 10,
    "layerdrop": 0.0,
    "ctc_loss_reduction": "mean",
    "ctc_zero_infinity": True,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run (default 40)")
    parser.add_argument("--clips", type=int, default=160, help="clips to synthesise (default 160)")
    parser.add_argument("--batch-size", type=int, default=8, help="per-device batch size (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each kind, interleaved (default 2)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the release, repo and runs (default: a temporary folder)")
    parser.add_argument("--threads-under-load", type=int, default=None, metavar="BUSY",
                        help="compare --torch_threads 1 and 2 with BUSY spinning processes competing")
    # Internal: one baseline run, in its own process.
    parser.add_argument("--baseline-child", nargs=3, metavar=("REPO", "DATA", "RESULT"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------
# Set-up: release, repo, baseline data
# ---------------------------------------------------------------------------------------


def make_release_and_repo(work: Path, clips: int) -> tuple[Path, Path]:
    from ctcforge.new import new_repo
    from ctcforge.synth import synthesize

    release = work / "cv"
    if not (release / LANGUAGE / "train.tsv").exists():
        synthesize(LANGUAGE, release, clips, seed=SYNTH_SEED, progress=False)
    repo = work / "repo"
    if not (repo / SCRIPT).exists():
        new_repo(LANGUAGE, repo, base_model="tiny", dataset=str(release))
    return release, repo


def prepare_baseline_data(repo: Path, release: Path, out: Path) -> int:
    """Features and labels of the training split, prepared once and saved for the
    baseline runs. Uses the runtime's loader (`ctcforge.runtime`, which the repo carries as
    ctcforge_runtime/) and the repo's own normaliser profile, feature extractor and tokenizer."""
    import numpy as np
    import torch
    from transformers import AutoFeatureExtractor, Wav2Vec2CTCTokenizer

    from ctcforge.runtime import speech_data, text_normalizer

    normalizer = text_normalizer.load(repo / text_normalizer.PROFILE_FILE)  # the repo's own profile
    feature_extractor = AutoFeatureExtractor.from_pretrained(repo)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(repo)
    input_name = feature_extractor.model_input_names[0]
    dataset = speech_data.load_speech_dataset(str(release), LANGUAGE, "train",
                                              sampling_rate=feature_extractor.sampling_rate)
    examples = []
    for row in dataset:
        # The loader leaves audio undecoded; decode_audio is how the script decodes a clip.
        waveform = speech_data.decode_audio(row["audio"], feature_extractor.sampling_rate).samples
        features = feature_extractor(waveform, sampling_rate=feature_extractor.sampling_rate)[input_name][0]
        labels = tokenizer(normalizer(row["sentence"] or "")).input_ids
        examples.append({input_name: np.asarray(features, dtype=np.float32), "labels": labels})
    torch.save({"input_name": input_name, "examples": examples}, out)
    return len(examples)


# ---------------------------------------------------------------------------------------
# The two kinds of run
# ---------------------------------------------------------------------------------------


def run_script(repo: Path, release: Path, output_dir: Path, steps: int, batch: int, extra: tuple = ()) -> dict:
    command = [sys.executable, SCRIPT, *extra, "--model_name_or_path", "./", "--dataset_name", str(release),
               "--dataset_config_name", LANGUAGE, "--output_dir", str(output_dir), "--do_train",
               "--max_steps", str(steps), "--per_device_train_batch_size", str(batch),
               "--learning_rate", str(LEARNING_RATE), "--seed", str(TRAIN_SEED),
               "--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0",
               "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"script run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    metrics = json.loads((output_dir / "train_results.json").read_text(encoding="utf-8"))
    return {"train_runtime": metrics["train_runtime"], "wall": wall,
            "train_samples": metrics.get("train_samples")}


def run_baseline(repo: Path, data: Path, output_dir: Path, steps: int, batch: int) -> dict:
    result_file = output_dir / "baseline_result.json"
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--steps", str(steps),
               "--batch-size", str(batch), "--baseline-child", str(repo), str(data), str(result_file)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"baseline run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    metrics = json.loads(result_file.read_text(encoding="utf-8"))
    return {"train_runtime": metrics["train_runtime"], "wall": wall,
            "train_samples": metrics["train_samples"]}


def baseline_child(repo: Path, data: Path, result_file: Path, steps: int, batch: int) -> None:
    """A plain Trainer: no filters, no custom scheduler, no length grouping."""
    import torch
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModelForCTC, Trainer, TrainingArguments,
                              Wav2Vec2CTCTokenizer, set_seed)

    saved = torch.load(data, weights_only=False)
    input_name, examples = saved["input_name"], saved["examples"]
    feature_extractor = AutoFeatureExtractor.from_pretrained(repo)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(repo)

    set_seed(TRAIN_SEED)
    config = AutoConfig.from_pretrained(repo)
    for name, value in {**SCRIPT_CTC_DEFAULTS, "pad_token_id": tokenizer.pad_token_id,
                        "vocab_size": len(tokenizer)}.items():
        if hasattr(config, name):
            setattr(config, name, value)
    model = AutoModelForCTC.from_config(config)

    def collate(batch_examples):
        batch_out = feature_extractor.pad([{input_name: e[input_name]} for e in batch_examples],
                                          padding=True, return_tensors="pt")
        labels = tokenizer.pad([{"input_ids": e["labels"]} for e in batch_examples],
                               padding=True, return_tensors="pt")
        batch_out["labels"] = labels["input_ids"].masked_fill(labels["attention_mask"].ne(1), -100)
        return batch_out

    args = TrainingArguments(output_dir=str(result_file.parent), max_steps=steps,
                             per_device_train_batch_size=batch, learning_rate=LEARNING_RATE,
                             seed=TRAIN_SEED, use_cpu=True, report_to="none",
                             dataloader_num_workers=0, save_strategy="no", eval_strategy="no",
                             disable_tqdm=True, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, data_collator=collate, train_dataset=examples)
    metrics = trainer.train().metrics
    result_file.write_text(json.dumps({**metrics, "train_samples": len(examples)}), encoding="utf-8")


def run_threads_under_load(args, repo: Path, release: Path, work: Path) -> None:
    """The script at 1 and at 2 torch threads, interleaved, each run beside `busy` spinners."""
    rows = []
    load_before = os.getloadavg()
    for repeat in range(1, args.repeats + 1):
        for threads in (1, 2):
            output_dir = work / "runs" / f"threads-{threads}-{repeat}"
            shutil.rmtree(output_dir, ignore_errors=True)
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(args.threads_under_load)]
            try:
                result = run_script(repo, release, output_dir, args.steps, args.batch_size,
                                    ("--torch_threads", str(threads)))
            finally:
                for spinner in spinners:
                    spinner.terminate()
                    spinner.wait()
            result["clips_per_s"] = args.steps * args.batch_size / result["train_runtime"]
            rows.append((threads, repeat, result))
            print(f"  {threads} thread(s), run {repeat}: {result['clips_per_s']:.2f} clips/s, train_runtime "
                  f"{result['train_runtime']:.2f} s", flush=True)
    print("\nload average (1, 5, 15 min) before the runs: " + ", ".join(f"{x:.2f}" for x in load_before)
          + "; after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{os.cpu_count()} CPUs, {args.threads_under_load} spinning processes, steps={args.steps} "
          f"batch={args.batch_size}")
    print("| torch threads | run | clips/s | train_runtime (s) |")
    print("| ---: | ---: | ---: | ---: |")
    for threads, repeat, result in rows:
        print(f"| {threads} | {repeat} | {result['clips_per_s']:.2f} | {result['train_runtime']:.2f} |")
    per_repeat = [one["clips_per_s"] / two["clips_per_s"] for (_, _, one), (_, _, two) in zip(rows[0::2], rows[1::2])]
    print("clips/s ratio, 1 thread / 2 threads, per repeat: " + ", ".join(f"{r:.2f}" for r in per_repeat))


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.baseline_child:
        repo, data, result_file = (Path(p) for p in args.baseline_child)
        baseline_child(repo, data, result_file, args.steps, args.batch_size)
        return

    with tempfile.TemporaryDirectory(prefix="ctcforge-bench-") as temporary:
        work = (args.workdir or Path(temporary)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        print(f"work folder: {work}", flush=True)
        start = time.perf_counter()
        release, repo = make_release_and_repo(work, args.clips)
        if args.threads_under_load is not None:
            print(f"set-up (synthesis, stamping): {time.perf_counter() - start:.1f} s", flush=True)
            run_threads_under_load(args, repo, release, work)
            return
        data = work / "baseline_data.pt"
        n_clips = prepare_baseline_data(repo, release, data)
        print(f"set-up (synthesis, stamping, baseline data: {n_clips} training clips): "
              f"{time.perf_counter() - start:.1f} s", flush=True)

        load_before = os.getloadavg()
        rows = []
        for repeat in range(1, args.repeats + 1):
            for kind, runner in (("script", run_script), ("baseline", run_baseline)):
                output_dir = work / "runs" / f"{kind}-{repeat}"
                shutil.rmtree(output_dir, ignore_errors=True)  # a reused --workdir starts clean
                if kind == "script":
                    result = runner(repo, release, output_dir, args.steps, args.batch_size)
                else:
                    result = runner(repo, data, output_dir, args.steps, args.batch_size)
                result["clips_per_s"] = args.steps * args.batch_size / result["train_runtime"]
                rows.append((kind, repeat, result))
                print(f"  {kind} {repeat}: {result['clips_per_s']:.2f} clips/s, train_runtime "
                      f"{result['train_runtime']:.2f} s, wall {result['wall']:.1f} s", flush=True)

        load_after = os.getloadavg()
        print()
        print("load average (1, 5, 15 min) before the runs: " + ", ".join(f"{x:.2f}" for x in load_before)
              + "; after: " + ", ".join(f"{x:.2f}" for x in load_after))
        print(f"steps={args.steps} batch={args.batch_size} clips={args.clips} "
              f"(training split: {n_clips} clips)")
        print("| run | clips/s | train_runtime (s) | whole wall time (s) |")
        print("| --- | ---: | ---: | ---: |")
        for kind, repeat, result in rows:
            print(f"| {kind} {repeat} | {result['clips_per_s']:.2f} | {result['train_runtime']:.2f} "
                  f"| {result['wall']:.1f} |")
        mean = {kind: sum(r["clips_per_s"] for k, _, r in rows if k == kind) / args.repeats
                for kind in ("script", "baseline")}
        print(f"\nmean clips/s: script {mean['script']:.2f}, baseline {mean['baseline']:.2f}; "
              f"ratio script/baseline {mean['script'] / mean['baseline']:.3f}")
        per_repeat = [a["clips_per_s"] / b["clips_per_s"]
                      for (_, _, a), (_, _, b) in zip(rows[0::2], rows[1::2])]
        print("ratio per repeat: " + ", ".join(f"{r:.3f}" for r in per_repeat))


if __name__ == "__main__":
    main()
