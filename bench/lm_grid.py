"""How long `ctcforge lm`'s weight tuning takes with the C++ beam search (ctc-beam-decoder)
against pyctcdecode, on the same cached dev log-probs, grid and machine, interleaved. Run
by hand; it is not a test.

    .venv/bin/python bench/lm_grid.py                                  # synthesise, train, build, then measure
    .venv/bin/python bench/lm_grid.py --workdir /tmp/lmgrid --repeats 3   # reuse what is there
    .venv/bin/python bench/lm_grid.py --repo demo-output/repo --dataset demo-output/cv

What is timed is `ctcforge.lm_tuning.score_grid`, the grid stage of `ctcforge lm --tune`:
every cell of the demo's grid (pyctcdecode's defaults added) decoded by the runtime's
beam_search (`ctcforge.runtime`, which a repo carries as ctcforge_runtime/) over one worker
per core, and scored. Both packages must score every cell the same, or the run stops. Then
the search alone: every dev clip decoded in one thread at the LM's weights and beam width
100, nothing else timed; the texts must be equal.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from common import LANGUAGE, load_average, train_tiny


def prepare(work: Path, clips: int, steps: int) -> tuple[Path, Path]:
    """A tiny model trained `steps` steps on `clips` synthesised clips, with a 3-gram from
    the training split's text (`ctcforge lm`); reused when already in `work`."""
    from ctcforge.lm import TextSources, build_language_model
    from ctcforge.synth import synthesize

    release, repo = work / "cv", work / "tiny"
    if not (release / LANGUAGE / "dev.tsv").is_file():
        synthesize(LANGUAGE, release, clips, seed=0, progress=False)
    if not (repo / "model.safetensors").is_file():
        print(f"training the tiny model {steps} steps", flush=True)
        train_tiny(repo, release, steps)
    if not (repo / "alphabet.json").is_file():
        build_language_model(repo, TextSources(dataset=str(release), config=LANGUAGE, split="train"), order=3,
                             progress=False, log=lambda message: None)
    return repo, release


def main() -> None:
    from ctcforge.demo import DEMO_TUNING_GRID
    from ctcforge.lm_folder import load_repo_decoder
    from ctcforge.lm_text import repo_normalizer
    from ctcforge.lm_tuning import TuningGrid, cached_dev_set, score_grid
    from ctcforge.runtime import beam_search
    from ctcforge.runtime.beam_search import CPP_ENGINE, PYTHON_ENGINE
    from ctcforge.runtime.error_rates import error_rates

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctcforge-lm-grid-bench"))
    parser.add_argument("--repo", type=Path, default=None, help="a repo with a trained model and its LM")
    parser.add_argument("--dataset", type=Path, default=None, help="the release --repo was trained on")
    parser.add_argument("--clips", type=int, default=160, help="clips to synthesise")
    parser.add_argument("--train-steps", type=int, default=300, help="training steps of the tiny model")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load {load_average()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")

    if args.repo:
        repo, release = args.repo, args.dataset
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        repo, release = prepare(args.workdir, args.clips, args.train_steps)
    normalizer = repo_normalizer(repo)
    dev = cached_dev_set(repo, str(release), LANGUAGE, args.split, "sentence", normalizer, None, 8, print)
    grid = TuningGrid(**DEMO_TUNING_GRID).with_defaults()
    frames = sum(len(log_probs) for log_probs in dev.log_probs)
    greedy_wer, greedy_cer = error_rates(dev.references, dev.greedy, normalizer)
    print(f"{len(dev.log_probs)} {args.split} clips, {frames} frames (about {frames / 50:.0f} s of audio at 50 "
          f"frames/s), greedy WER {greedy_wer:.3f} CER {greedy_cer:.3f}; {len(grid.cells())} cells")

    seconds: dict[str, list[float]] = {CPP_ENGINE: [], PYTHON_ENGINE: []}
    scores = {}
    for repeat in range(1, args.repeats + 1):  # interleaved, so both see the same load
        for engine in seconds:
            before = load_average()
            started = time.perf_counter()
            decoder = load_repo_decoder(repo, beam_search, engine=engine)
            scores[engine] = score_grid(beam_search, decoder, dev, grid, normalizer, error_rates, progress=False)
            seconds[engine].append(time.perf_counter() - started)
            print(f"  {engine:<17} #{repeat}: {seconds[engine][-1]:7.2f} s "
                  f"({seconds[engine][-1] / len(grid.cells()):.3f} s a cell; load {before} before, "
                  f"{load_average()} after)", flush=True)
        if scores[CPP_ENGINE] != scores[PYTHON_ENGINE]:
            raise SystemExit("the two decoders scored the grid differently")
    cpp, python = statistics.median(seconds[CPP_ENGINE]), statistics.median(seconds[PYTHON_ENGINE])
    best = min(scores[CPP_ENGINE], key=lambda s: (s.wer, s.cer))
    print(f"median: {CPP_ENGINE} {cpp:.2f} s, {PYTHON_ENGINE} {python:.2f} s: {python / cpp:.2f}x; "
          f"every cell's WER and CER equal; best WER {best.wer:.3f} (alpha {best.alpha}, beta {best.beta}, "
          f"beam {best.beam_width})")
    time_search_alone(repo, dev, frames / 50, args.repeats)


def time_search_alone(repo, dev, audio_seconds: float, repeats: int) -> None:
    """The beam search by itself: every dev clip decoded one after another in this process at
    the LM's own weights and the default beam width, as one eval.py LM worker decodes, with
    nothing else timed (no loading, pool or scoring). Interleaved; the texts must be equal."""
    from ctcforge.lm_folder import load_repo_decoder
    from ctcforge.runtime import beam_search
    from ctcforge.runtime.beam_search import CPP_ENGINE, DEFAULT_BEAM_WIDTH, PYTHON_ENGINE

    decoders = {engine: load_repo_decoder(repo, beam_search, engine=engine) for engine in (CPP_ENGINE, PYTHON_ENGINE)}
    seconds: dict[str, list[float]] = {engine: [] for engine in decoders}
    texts = {}
    for repeat in range(1, repeats + 1):
        for engine, decoder in decoders.items():
            started = time.perf_counter()
            texts[engine] = [decoder.best_text(log_probs, DEFAULT_BEAM_WIDTH) for log_probs in dev.log_probs]
            seconds[engine].append(time.perf_counter() - started)
            print(f"  search alone, {engine:<17} #{repeat}: {seconds[engine][-1]:6.2f} s "
                  f"({1000 * seconds[engine][-1] / audio_seconds:.2f} ms per audio second; load {load_average()})",
                  flush=True)
        if texts[CPP_ENGINE] != texts[PYTHON_ENGINE]:
            differ = sum(a != b for a, b in zip(texts[CPP_ENGINE], texts[PYTHON_ENGINE]))
            raise SystemExit(f"the two decoders wrote other text for {differ} of {len(dev.log_probs)} clips")
    cpp, python = statistics.median(seconds[CPP_ENGINE]), statistics.median(seconds[PYTHON_ENGINE])
    print(f"search alone, beam {DEFAULT_BEAM_WIDTH}, median: {CPP_ENGINE} {1000 * cpp / audio_seconds:.2f} ms, "
          f"{PYTHON_ENGINE} {1000 * python / audio_seconds:.2f} ms per audio second: {python / cpp:.2f}x; "
          f"the same text for all {len(dev.log_probs)} clips")


if __name__ == "__main__":
    main()
