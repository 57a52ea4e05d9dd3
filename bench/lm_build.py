#!/usr/bin/env python
"""n-gram LM build time through ctcforge.lm against bare lmplz + build_binary, and
beam-search time per audio second with a fork pool against one process.

Run by hand (not a test), from the project root:

    .venv/bin/python bench/lm_build.py [--sentences 1000000] [--order 5] [--repeats 1]
                                       [--repo DIR --dataset D --config C --split dev]
                                       [--clips 200] [--train-steps 400] [--workdir DIR]

1. Build. A synthetic corpus of --sentences sentences is made from the hy-AM sentence
   file (normalised, then words drawn with a seeded RNG at the file's word frequencies,
   sentence lengths drawn from the file's), so it is large but Armenian-shaped. The same
   file is built into an order --order LM twice, interleaved per repeat:
   a) ctcforge: `ctcforge.lm.build_language_model` into a stamped `tiny` repo (text stage
      with the repo normaliser and deduplication, lmplz, the </s> check, build_binary,
      unigrams.txt, the layout);
   b) bare: `lmplz -o ORDER -S MEMORY --discount_fallback --text corpus --arpa lm.arpa`
      then `build_binary lm.arpa lm.binary`, the same memory cap.
2. Beam search. The log-probs of a real tiny model on --split clips (a trained repo given
   with --repo/--dataset, else a release of --clips synthesised clips and a tiny model
   trained --train-steps steps here) are decoded with an LM built by ctcforge.lm from the
   corpus of part 1 and the release's training text, at pyctcdecode's defaults (alpha
   0.5, beta 1.5, beam width 100), with
   `BeamSearchDecoderCTC.decode_batch(pool, logits)`: with a fork pool of os.cpu_count()
   processes and with no pool, interleaved --repeats times; the median time per audio
   second of each, pool start-up shown apart.

The load average is printed before and after each measurement: the machine may be shared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import LANGUAGE, load_average, train_tiny

SEED = 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=1_000_000, help="synthetic corpus size (default 1000000)")
    parser.add_argument("--order", type=int, default=5, help="n-gram order (default 5)")
    parser.add_argument("--memory", default="10%", help="lmplz -S for both builds (default 10%%)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="builds, and decodes, of each kind, interleaved (default 1)")
    parser.add_argument("--repo", type=Path, help="a trained repo whose logits are decoded (copied, not changed)")
    parser.add_argument("--dataset", help="its dataset (with --repo)")
    parser.add_argument("--config", default=LANGUAGE, help="dataset config (default hy-AM)")
    parser.add_argument("--split", default="dev", help="clips to decode, e.g. dev or train+dev (default dev)")
    parser.add_argument("--clips", type=int, default=200, help="clips to synthesise without --repo (default 200)")
    parser.add_argument("--train-steps", type=int, default=400, help="training steps without --repo (default 400)")
    parser.add_argument("--skip-build", action="store_true", help="only the beam-search measurement")
    parser.add_argument("--skip-decode", action="store_true", help="only the build measurement")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    return parser.parse_args(argv)


def timed(label: str, action):
    before = load_average()
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    print(f"{label:<28} {seconds:8.2f} s   load before {before}, after {load_average()}", flush=True)
    return seconds, result


# ---------------------------------------------------------------------------------------
# 1. Build


def synthetic_corpus(path: Path, sentences: int) -> tuple[int, int]:
    """Writes `sentences` recombined hy-AM sentences; returns (sentences, words)."""
    from ctcforge.languages import load_profile
    from ctcforge.synth import load_sentences

    normalize = load_profile(LANGUAGE).normalizer()
    source = [normalize(s).split() for s in load_sentences(LANGUAGE)]
    tokens = [word for sentence in source for word in sentence]  # word frequencies of the file
    lengths = [len(sentence) for sentence in source]
    rng = random.Random(SEED)
    words = 0
    with open(path, "w", encoding="utf-8") as corpus:
        for _ in range(sentences):
            sentence = rng.choices(tokens, k=rng.choice(lengths))
            words += len(sentence)
            corpus.write(" ".join(sentence) + "\n")
    return sentences, words


def build_with_ctcforge(repo: Path, corpus: Path, order: int, memory: str) -> None:
    from ctcforge.lm import TextSources, build_language_model

    build_language_model(repo, TextSources(files=[corpus]), order=order, memory=memory, progress=False,
                         log=lambda message: print(f"  {message}"))


def build_bare(corpus: Path, folder: Path, order: int, memory: str) -> None:
    from ctcforge.kenlm_tools import find_tool

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    arpa = folder / "lm.arpa"
    subprocess.run([str(find_tool("lmplz")), "-o", str(order), "-S", memory, "-T", f"{folder}/",
                    "--discount_fallback", "--text", str(corpus), "--arpa", str(arpa)],
                   check=True, stderr=subprocess.DEVNULL)
    subprocess.run([str(find_tool("build_binary")), str(arpa), str(folder / "lm.binary")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench_build(args, work: Path) -> None:
    from ctcforge.new import new_repo

    corpus = work / "corpus.txt"
    seconds, (sentences, words) = timed("corpus generation", lambda: synthetic_corpus(corpus, args.sentences))
    print(f"corpus: {sentences} sentences, {words} words, {corpus.stat().st_size / 2**20:.1f} MiB")
    repo = work / "build-repo"
    if not repo.is_dir():
        new_repo(LANGUAGE, repo, base_model="tiny")
    ctcforge_times, bare_times = [], []
    for repeat in range(1, args.repeats + 1):
        seconds, _ = timed(f"ctcforge.lm build {repeat}",
                           lambda: build_with_ctcforge(repo, corpus, args.order, args.memory))
        ctcforge_times.append(seconds)
        seconds, _ = timed(f"bare lmplz+build_binary {repeat}",
                           lambda: build_bare(corpus, work / "bare", args.order, args.memory))
        bare_times.append(seconds)
    sizes = {"ctcforge lm.binary": repo / "language_model" / "lm.binary", "bare lm.binary": work / "bare" / "lm.binary"}
    for name, path in sizes.items():
        print(f"{name}: {path.stat().st_size / 2**20:.1f} MiB")
    mean_ctcforge = sum(ctcforge_times) / len(ctcforge_times)
    mean_bare = sum(bare_times) / len(bare_times)
    print(f"mean: ctcforge {mean_ctcforge:.1f} s, bare {mean_bare:.1f} s, ratio {mean_ctcforge / mean_bare:.2f}")


# ---------------------------------------------------------------------------------------
# 2. Beam search


def trained_repo(args, work: Path) -> tuple[Path, str]:
    """A copy of --repo (so its LM is not replaced), or a tiny model trained here."""
    if args.repo:
        copy = work / "decode-repo"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(args.repo, copy, ignore=shutil.ignore_patterns("checkpoint-*", ".ctcforge-cache"))
        return copy, args.dataset
    from ctcforge.synth import synthesize

    release, repo = work / "cv", work / "decode-repo"
    if not release.is_dir():
        synthesize(LANGUAGE, release, args.clips, seed=SEED, progress=False)
    if not (repo / "model.safetensors").is_file():
        timed(f"training {args.train_steps} steps",
              lambda: train_tiny(repo, release, args.train_steps, log_name=None))
    return repo, str(release)


def bench_decode(args, work: Path) -> None:
    import jiwer
    from pyctcdecode import BeamSearchDecoderCTC

    from ctcforge.lm import TextSources, build_language_model
    from ctcforge.lm_text import repo_normalizer
    from ctcforge.lm_tuning import compute_dev_set, readable_clips
    from ctcforge.runtime.speech_data import load_speech_dataset

    repo, dataset = trained_repo(args, work)
    # The LM of part 1 (the synthetic corpus, with the release's training text): a real
    # LM's size, where the release's few hundred sentences would flatter the search.
    corpus = work / "corpus.txt"
    if not corpus.is_file():
        synthetic_corpus(corpus, args.sentences)
    build_language_model(repo, TextSources(files=[corpus], dataset=dataset, config=args.config, split="train"),
                         order=args.order, memory=args.memory, progress=False,
                         log=lambda message: print(f"  {message}"))
    normalizer = repo_normalizer(repo)
    rows = load_speech_dataset(dataset, args.config, args.split)
    clips, _ = readable_clips(rows, "sentence", normalizer, 16000)
    audio_seconds = sum(len(audio) for _, audio in clips) / 16000
    _, dev = timed("acoustic model log-probs", lambda: compute_dev_set(repo, rows, "sentence", normalizer, 8, print))
    frames = sum(len(lp) for lp in dev.log_probs)
    print(f"{len(dev.log_probs)} clips, {audio_seconds:.1f} s of audio, {frames} frames "
          f"({frames / audio_seconds:.1f} frames/s)")
    greedy_cer = jiwer.cer(dev.references, dev.greedy)
    print(f"greedy CER of the model on these clips: {greedy_cer:.3f}")
    decoder = BeamSearchDecoderCTC.load_from_dir(str(repo))  # pyctcdecode's own pool is what is measured
    processes = os.cpu_count() or 1
    start_up, pool = timed(f"fork pool start ({processes})",
                           lambda: multiprocessing.get_context("fork").Pool(processes))
    single, pooled = [], []
    with pool:
        for repeat in range(1, args.repeats + 1):  # interleaved, so both see the same load
            single.append(timed(f"decode_batch, no pool {repeat}",
                                lambda: decoder.decode_batch(None, dev.log_probs))[0])
            pooled.append(timed(f"decode_batch, pool of {processes} {repeat}",
                                lambda: decoder.decode_batch(pool, dev.log_probs))[0])
    for label, seconds in (("no pool", statistics.median(single)), (f"pool of {processes}", statistics.median(pooled))):
        print(f"{label:<12} median {1000 * seconds / audio_seconds:7.2f} ms per audio second "
              f"(real-time factor {seconds / audio_seconds:.5f})")
    print(f"speed-up {statistics.median(single) / statistics.median(pooled):.2f}x "
          f"(pool start-up {1000 * start_up:.0f} ms not included)")


def main(argv=None) -> None:
    args = parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, load {load_average()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    with tempfile.TemporaryDirectory(prefix="ctcforge-bench-lm-") as temporary:
        work = args.workdir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_build:
            bench_build(args, work)
        if not args.skip_decode:
            bench_decode(args, work)


if __name__ == "__main__":
    main()
