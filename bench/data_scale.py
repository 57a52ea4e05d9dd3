#!/usr/bin/env python
"""Data preparation at scale: features prepared up front against features on the fly.

Run by hand (not a test), from the project root:

    .venv/bin/python bench/data_scale.py [--sizes 5000 20000 50000] [--base-clips 300]
                                         [--steps 50] [--workdir DIR]

It synthesises `--base-clips` hy-AM clips (ctcforge.synth, seed 0), measures each one's
duration by decoding it, and stamps a `tiny` repo from them. For each size it then writes a
release in today's Common Voice layout, `cv-SIZE/hy-AM/` with the 13-column train.tsv
and a clip_durations.tsv: SIZE rows, clip i a hard link to base clip i mod base-clips under
its own name. For each size and mode (`--features_on_the_fly no`, then `yes`), one fresh
process runs the repo's own run_speech_recognition_ctc.py main() (imported as a module) for
`--steps` training steps with 2 DataLoader workers, its datasets cache in a folder of its own,
and records:

- preparation seconds: the time inside the script's load_split, add_normalised_text and
  clip_preparation.prepare_split for the training split (reading the TSV and its listed
  durations, normalising, preparing the features or the manifest), and that per 1,000 clips;
- peak RSS of the process when the preparation ends (ru_maxrss), and its RSS before it began;
- the prepared split's Arrow bytes (held in memory for this loader's splits) and the bytes
  written under the datasets cache folder;
- training throughput: clips per second over the first `--steps` steps (steps x batch /
  train_runtime from train_results.json).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ctcforge and tests
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LANGUAGE, TRAINING_ARGS, load_average  # noqa: E402

SYNTH_SEED = 0
MODES = ("yes", "no")  # --features_on_the_fly: batch by batch, then prepared up front
TSV_COLUMNS = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
               "age", "gender", "accents", "variant", "locale", "segment")
BATCH_SIZE = 16  # TRAINING_ARGS' --per_device_train_batch_size


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000],
                        help="training clips of each release (default 5000 20000 50000)")
    parser.add_argument("--base-clips", type=int, default=300, help="clips to synthesise (default 300)")
    parser.add_argument("--steps", type=int, default=50, help="training steps measured (default 50)")
    parser.add_argument("--train-sizes", type=int, nargs="*", default=None,
                        help="sizes at which training is measured too (default: all); the others stop "
                             "after the preparation (--preprocessing_only)")
    parser.add_argument("--workdir", type=Path, default=Path("bench-data-scale"),
                        help="folder for the releases, repo and runs (default ./bench-data-scale)")
    # Internal: one measured run, in its own process.
    parser.add_argument("--child", nargs=5, metavar=("REPO", "RELEASE", "MODE", "TRAIN", "RESULT"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------
# The releases
# ---------------------------------------------------------------------------------------


def base_release(work: Path, clips: int) -> tuple[Path, list[dict], dict[str, int]]:
    """The synthesised clips, their train.tsv rows and their decoded durations (ms)."""
    from ctcforge.synth import synthesize

    release = work / "base"
    if not (release / LANGUAGE / "train.tsv").exists():
        synthesize(LANGUAGE, release, clips, seed=SYNTH_SEED, progress=True)
    folder = release / LANGUAGE
    rows = []
    for split in ("train", "dev", "test"):
        with open(folder / f"{split}.tsv", encoding="utf-8", newline="") as tsv:
            rows += list(csv.DictReader(tsv, delimiter="\t", quoting=csv.QUOTE_NONE))
    durations_file = work / "base-durations.json"
    if not durations_file.exists():
        from ctcforge.runtime import speech_data

        durations = {row["path"]: round(1000 * len(speech_data.decode_audio(
            {"path": str(folder / "clips" / row["path"]), "bytes": None}, 16000).samples) / 16000) for row in rows}
        durations_file.write_text(json.dumps(durations), encoding="utf-8")
    return release, rows, json.loads(durations_file.read_text(encoding="utf-8"))


def scaled_release(work: Path, base: Path, rows: list[dict], durations: dict[str, int], size: int) -> Path:
    """`size` training clips in today's layout, each a hard link to a base clip."""
    release = work / f"cv-{size}"
    folder = release / LANGUAGE
    if (folder / "clip_durations.tsv").exists():
        return release
    shutil.rmtree(release, ignore_errors=True)
    (folder / "clips").mkdir(parents=True)
    listed = []
    with open(folder / "train.tsv", "w", encoding="utf-8", newline="") as tsv:
        tsv.write("\t".join(TSV_COLUMNS) + "\n")
        for index in range(size):
            source = rows[index % len(rows)]
            name = f"common_voice_{LANGUAGE}_{index}.mp3"
            os.link(base / LANGUAGE / "clips" / source["path"], folder / "clips" / name)
            fields = {column: source.get(column) or "" for column in TSV_COLUMNS}
            fields.update(client_id=f"speaker{index % 97}", path=name, sentence_id=str(index), locale=LANGUAGE)
            tsv.write("\t".join(fields[column] for column in TSV_COLUMNS) + "\n")
            listed.append(f"{name}\t{durations[source['path']]}")
    for split in ("dev", "test"):
        shutil.copy(base / LANGUAGE / f"{split}.tsv", folder / f"{split}.tsv")
    (folder / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + "\n".join(listed) + "\n", encoding="utf-8")
    return release


# ---------------------------------------------------------------------------------------
# One run, in a process of its own
# ---------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def child(repo: Path, release: Path, mode: str, train: bool, result_file: Path, steps: int) -> None:
    from tests.repo_script import repo_script_module

    output_dir = result_file.parent / "out"
    record = {"clips": None, "preparation_s": 0.0}

    def timed(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            record["preparation_s"] += time.perf_counter() - start
            return result
        return wrapper

    with repo_script_module(repo, "run_speech_recognition_ctc.py") as script:
        prepare_split = script.clip_preparation.prepare_split

        def prepare_and_measure(dataset, name, *args, **kwargs):
            kept, counts = timed(prepare_split)(dataset, name, *args, **kwargs)
            record.update(clips=len(dataset), kept=len(kept), prepared_bytes=kept.data.nbytes,
                          peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            return kept, counts

        record["rss_before"] = rss_bytes()
        script.load_split = timed(script.load_split)
        script.add_normalised_text = timed(script.add_normalised_text)
        script.clip_preparation.prepare_split = prepare_and_measure
        sys.argv = ["run_speech_recognition_ctc.py", "--model_name_or_path", "./", "--dataset_name", str(release),
                    "--dataset_config_name", LANGUAGE, "--output_dir", str(output_dir), "--max_steps", str(steps),
                    *TRAINING_ARGS, "--dataloader_num_workers", "2", "--features_on_the_fly", mode,
                    *([] if train else ["--preprocessing_only"])]
        with contextlib.chdir(repo):
            script.main()
    record["clips_per_s"] = None
    if train:
        metrics = json.loads((output_dir / "train_results.json").read_text(encoding="utf-8"))
        record["clips_per_s"] = steps * BATCH_SIZE / metrics["train_runtime"]
    result_file.write_text(json.dumps(record), encoding="utf-8")


def measure(repo: Path, release: Path, mode: str, train: bool, run_dir: Path, steps: int) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    cache = run_dir / "datasets-cache"
    cache.mkdir(parents=True)
    result_file = run_dir / "result.json"
    load_before = load_average()
    command = [sys.executable, str(Path(__file__).resolve()), "--steps", str(steps),
               "--child", str(repo), str(release), mode, str(train), str(result_file)]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache)}
    with open(run_dir / "log.txt", "w") as log:
        subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    record = json.loads(result_file.read_text(encoding="utf-8"))
    record.update(cache_bytes=folder_bytes(cache), load_before=load_before, load_after=load_average())
    return record


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        repo, release, mode, train, result_file = args.child
        child(Path(repo), Path(release), mode, train == "True", Path(result_file), args.steps)
        return
    from ctcforge.new import new_repo

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    base, rows, durations = base_release(work, args.base_clips)
    repo = work / "repo"
    if not (repo / "run_speech_recognition_ctc.py").exists():
        new_repo(LANGUAGE, repo, base_model="tiny", dataset=str(base))
    mean_seconds = sum(durations.values()) / len(durations) / 1000
    print(f"{len(rows)} base clips, {mean_seconds:.2f} s on average; started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
          flush=True)
    releases = {size: scaled_release(work, base, rows, durations, size) for size in args.sizes}
    train_sizes = args.sizes if args.train_sizes is None else args.train_sizes
    results = []
    # On the fly first: on a machine shared with other work, its quick runs all finish.
    for mode in MODES:
        for size in args.sizes:
            record = measure(repo, releases[size], mode, size in train_sizes, work / "runs" / f"{size}-{mode}",
                             args.steps)
            results.append((size, mode, record))
            print(json.dumps({"size": size, "mode": mode, **record}), flush=True)
            (work / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")

    print(f"\nended {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print("| clips | mode | preparation (s) | s per 1,000 clips | peak RSS (MiB) | RSS before (MiB) "
          "| prepared split (MiB) | datasets cache written (KiB) | clips/s, first steps | load before → after |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for size, mode, record in results:
        print(f"| {size:,} | {'on the fly' if mode == 'yes' else 'up front'} | {record['preparation_s']:.1f} "
              f"| {1000 * record['preparation_s'] / size:.2f} | {record['peak_rss'] / 2**20:,.0f} "
              f"| {record['rss_before'] / 2**20:,.0f} | {record['prepared_bytes'] / 2**20:,.1f} "
              f"| {record['cache_bytes'] / 1024:,.0f} "
              f"| {'-' if record['clips_per_s'] is None else format(record['clips_per_s'], '.1f')} "
              f"| {record['load_before']} → {record['load_after']} |")


if __name__ == "__main__":
    main()
