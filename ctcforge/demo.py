"""`ctcforge demo`: the whole life of a language repo, offline on a CPU, in one command.

synthesise speech -> stamp a repo -> train it -> build and tune its n-gram LM -> evaluate
with and without the LM -> rebuild the card -> load it with `pipeline()`.

Every stage runs the repo's own code where a user would (the training script and eval.py
as subprocesses, as `python run_speech_recognition_ctc.py ...` is run by hand) and skips
its work when a rerun finds it done, so an interrupted demo picks up where it stopped;
the training script itself resumes from its last checkpoint.

`--minutes` is the budget for the whole demo. Training gets what the other stages leave
(`--max_train_minutes`, whose learning-rate schedule follows the clock), so the demo
ends in about the time asked on any machine; a slower machine trains fewer steps.
"""

from __future__ import annotations

import ast
import csv
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ctcforge.results import parse_eval_results
from ctcforge.runtime import adapters
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import RESULTS_SUFFIX

DEFAULT_LANGUAGE = "hy-AM"
DEFAULT_MINUTES = 15.0
DEFAULT_CLIPS = 1600
# What the stages after training take on a 2-core CPU (LM build and tuning, two eval.py
# runs, the card, loading the pipeline), measured there, with a margin.
AFTER_TRAINING_MINUTES = 3.0
# The part of it left after LM tuning: the two eval.py runs, the card and the pipeline. The
# LM grid stops when only this much of the budget is left (it is never searched in full
# on a slow machine, where it once took 35-40 s a cell).
AFTER_TUNING_MINUTES = 1.5
MIN_TRAINING_MINUTES = 1.0
# A CTC model first learns to write nothing but blanks (dev CER about 1); one that is still
# there when its time is up has learned nothing an LM could improve. Measured here: 1.0 at
# step 178 of a demo on a busy machine, 0.23 at step 250 of one on a quiet machine.
PLATEAU_CER = 0.9
# A grid small enough to search in well under a minute on 2 cores (the full default grid
# takes several); pyctcdecode's defaults are always added to it.
DEMO_TUNING_GRID = {"alphas": (0.0, 0.5, 1.0, 2.0), "betas": (0.0, 1.5, 3.0), "beam_widths": (32,)}
TRAINING_ARGS = (
    "--per_device_train_batch_size", "16", "--learning_rate", "2e-3", "--warmup_steps", "0.1",
    "--max_steps", "100000",  # only a cap: the time budget ends the run
    "--logging_steps", "25", "--eval_strategy", "steps", "--eval_steps", "250",
    "--save_steps", "250", "--save_total_limit", "1",
    "--do_train", "--do_eval", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
)


@dataclass
class Demo:
    language: str
    minutes: float
    output_dir: Path
    num_clips: int = DEFAULT_CLIPS
    seed: int = 0
    log: object = print
    started: float = field(default_factory=time.monotonic)

    @property
    def release(self) -> Path:
        return self.output_dir / "cv"

    @property
    def repo(self) -> Path:
        return self.output_dir / "repo"

    def elapsed_minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def dataset_args(self, split: str) -> list[str]:
        return ["--dataset", str(self.release), "--config", self.language, "--split", split]


def run_demo(language: str = DEFAULT_LANGUAGE, minutes: float = DEFAULT_MINUTES,
             output_dir: Path = Path("demo-output"), num_clips: int = DEFAULT_CLIPS, log=print) -> dict:
    """Runs every stage and returns the result table: {decoder: {"wer": .., "cer": ..}}."""
    if minutes <= AFTER_TRAINING_MINUTES:
        raise CtcforgeError(f"--minutes {minutes:g} leaves no time to train; give at least "
                            f"{AFTER_TRAINING_MINUTES + MIN_TRAINING_MINUTES:g}")
    demo = Demo(language, minutes, Path(output_dir).expanduser().resolve(), num_clips, log=log)
    demo.output_dir.mkdir(parents=True, exist_ok=True)
    for stage in (synthesise, stamp, train, check_progress, build_lm, evaluate, card):
        log(f"== {stage.__name__} ({demo.elapsed_minutes():.1f} min in)")
        stage(demo)
    results = read_results(demo)
    log_pipeline_check(demo)
    log_summary(demo, results)
    return results


# ---------------------------------------------------------------------------- stages

def synthesise(demo: Demo) -> None:
    from ctcforge.synth import synthesize

    provenance = demo.release / demo.language / "ctcforge-synth.json"
    if provenance.is_file():
        made = json.loads(provenance.read_text(encoding="utf-8"))
        demo.log(f"skipped: {made['num_clips']} clips already in {provenance.parent}")
        return
    synthesize(demo.language, demo.release, demo.num_clips, seed=demo.seed)


def stamp(demo: Demo) -> None:
    from ctcforge.answers import ANSWERS_FILE
    from ctcforge.new import new_repo

    if (demo.repo / ANSWERS_FILE).is_file():
        demo.log(f"skipped: {demo.repo} already stamped")
        return
    new_repo(demo.language, demo.repo, base_model="tiny", dataset=str(demo.release))


def train(demo: Demo) -> None:
    if (demo.repo / "train_results.json").is_file() and (demo.repo / "model.safetensors").is_file():
        demo.log("skipped: the model is trained (delete train_results.json to train again)")
        return
    budget = training_budget(demo)
    command = [sys.executable, "run_speech_recognition_ctc.py", "--model_name_or_path", "./",
               "--dataset_name", str(demo.release), "--dataset_config_name", demo.language,
               "--train_split_name", "train", "--eval_split_name", "dev", "--output_dir", "./",
               "--max_train_minutes", f"{budget:.2f}", *TRAINING_ARGS]
    log_file = demo.repo / "train.log"
    demo.log(f"training for {budget:.1f} minutes on the CPU (log: {log_file})")
    with log_file.open("a", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=demo.repo, stdout=log, stderr=subprocess.STDOUT, text=True)
        show_training_progress(process, log_file, budget)
    if process.returncode != 0:
        raise CtcforgeError(f"training failed (exit {process.returncode}); see {log_file}")


def check_progress(demo: Demo) -> None:
    """Stops the demo, in one line, when the model left training still on the blank
    plateau: an LM tuned and an evaluation run on it would only dress up a useless model."""
    results = demo.repo / "eval_results.json"
    cer = json.loads(results.read_text(encoding="utf-8")).get("eval_cer") if results.is_file() else None
    if cer is None:
        raise CtcforgeError(f"training left no dev CER in {results}; see {demo.repo / 'train.log'}")
    if cer > PLATEAU_CER:
        state = demo.repo / "trainer_state.json"
        steps = json.loads(state.read_text(encoding="utf-8")).get("global_step") if state.is_file() else "?"
        raise CtcforgeError(
            f"the model is still on the blank plateau after {steps} training steps (dev CER {cer:.2f}, above "
            f"{PLATEAU_CER}), too few for this machine's speed; no LM is built on it. Give it more time "
            f"(--minutes {2 * demo.minutes:g}) or a quieter machine, with a fresh --output-dir")
    demo.log(f"dev CER after training: {cer:.3f}")


def training_budget(demo: Demo) -> float:
    """Minutes for training: what the demo's budget leaves after the stages before it and
    the ones after it."""
    budget = demo.minutes - demo.elapsed_minutes() - AFTER_TRAINING_MINUTES
    if budget < MIN_TRAINING_MINUTES:
        raise CtcforgeError(f"only {budget:.1f} minutes left to train; give a larger --minutes")
    return budget


def show_training_progress(process: subprocess.Popen, log_file: Path, budget_minutes: float) -> None:
    """A bar over the time budget, with the latest training loss and dev error rates
    read from the Trainer's log lines."""
    from tqdm.auto import tqdm

    total = int(budget_minutes * 60)
    with tqdm(total=total, desc="training", unit="s", bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s {postfix}") as bar:
        started = time.monotonic()
        while process.poll() is None:
            time.sleep(2)
            bar.n = min(total, int(time.monotonic() - started))
            bar.set_postfix(latest_figures(log_file), refresh=True)
        bar.n = min(total, int(time.monotonic() - started))
        bar.set_postfix(latest_figures(log_file), refresh=True)


def latest_figures(log_file: Path) -> dict[str, str]:
    """The last loss and dev WER/CER the Trainer logged (its lines are Python dicts)."""
    figures: dict[str, str] = {}
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{'"):
            continue
        try:
            entry = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            continue
        for key, label in (("loss", "loss"), ("eval_cer", "dev CER"), ("eval_wer", "dev WER")):
            if key in entry:
                figures[label] = str(entry[key])
    return figures


def build_lm(demo: Demo) -> None:
    from ctcforge.lm import TextSources, build_language_model
    from ctcforge.lm_tuning import TuningGrid, tune_language_model
    from ctcforge.runtime.repo_files import ALPHABET_FILE

    if (demo.repo / ALPHABET_FILE).is_file() and (demo.repo / "lm_tuning" / "best.json").is_file():
        demo.log("skipped: the LM is built and tuned")
        return
    # The training transcripts; the leakage guard keeps the test sentences out.
    build_language_model(demo.repo, TextSources(dataset=str(demo.release), config=demo.language,
                                                split="train"), log=demo.log)
    tune_language_model(demo.repo, str(demo.release), demo.language, "dev", grid=TuningGrid(**DEMO_TUNING_GRID),
                        deadline=tuning_deadline(demo), log=demo.log)


def tuning_deadline(demo: Demo) -> float:
    """When the LM grid must stop (a time.monotonic() value) so that the stages after it
    still end within --minutes."""
    return demo.started + (demo.minutes - AFTER_TUNING_MINUTES) * 60


def evaluate(demo: Demo) -> None:
    for decoder in ("greedy", "lm"):
        folder = demo.repo / "eval" / decoder
        if list(folder.glob(f"*{RESULTS_SUFFIX}")):
            demo.log(f"skipped: eval/{decoder} has results")
            continue
        command = [sys.executable, "eval.py", "--model_id", "./", *demo.dataset_args("test"),
                   "--log_outputs", "--decoder", decoder, "--output_dir", str(folder.relative_to(demo.repo))]
        demo.log(f"eval.py --decoder {decoder}")
        result = subprocess.run(command, cwd=demo.repo, text=True)
        if result.returncode != 0:
            raise CtcforgeError(f"eval.py --decoder {decoder} failed (exit {result.returncode}); output above")


def card(demo: Demo) -> None:
    from ctcforge.card import rebuild_card

    demo.log(f"wrote {rebuild_card(demo.repo)}")


# ---------------------------------------------------------------------------- report

def read_results(demo: Demo) -> dict[str, dict[str, float]]:
    results = {}
    for decoder in ("greedy", "lm"):
        path = next((demo.repo / "eval" / decoder).glob(f"*{RESULTS_SUFFIX}"))
        results[decoder] = parse_eval_results(path)
    return results


def log_pipeline_check(demo: Demo) -> None:
    """Loads the repo the way its users will, and transcribes one test clip with it."""
    from transformers import pipeline

    from ctcforge.lm_folder import load_repo_decoder

    # transformers checks only that the alphabet holds the tokenizer's labels, not that it
    # holds them in id order, and shows a damaged KenLM file as a traceback.
    load_repo_decoder(demo.repo)
    with (demo.release / demo.language / "test.tsv").open(encoding="utf-8", newline="") as tsv:
        first = next(csv.DictReader(tsv, delimiter="\t", quoting=csv.QUOTE_NONE))
    # An adapter model loads with its language's adapter.
    arguments = adapters.pipeline_arguments(str(demo.repo))
    asr = pipeline("automatic-speech-recognition", model=str(demo.repo), device=-1, **arguments)
    if asr.type != "ctc_with_lm":
        raise CtcforgeError(f"pipeline() loaded {demo.repo} as {asr.type!r}, not 'ctc_with_lm': the LM "
                            "is not wired in; rerun `ctcforge lm`")
    text = asr(str(demo.release / demo.language / "clips" / first["path"]))["text"]
    demo.log(f"pipeline('automatic-speech-recognition', model={str(demo.repo)!r}) [{asr.type}]:")
    demo.log(f"  said:  {first['sentence']}\n  heard: {text}")


def log_summary(demo: Demo, results: dict[str, dict[str, float]]) -> None:
    demo.log(f"\nheld-out synthetic test clips, {demo.language}, after {demo.elapsed_minutes():.1f} minutes:")
    demo.log(f"{'decoder':<16}{'WER':>8}{'CER':>8}")
    for decoder, label in (("greedy", "greedy"), ("lm", "n-gram LM")):
        demo.log(f"{label:<16}{results[decoder]['wer']:>8.3f}{results[decoder]['cer']:>8.3f}")
    demo.log("\nwritten:")
    for path in ("README.md", "training_curve.png", "model.safetensors", "language_model/", "lm_tuning/",
                 "eval/greedy/", "eval/lm/", "train.log"):
        demo.log(f"  {demo.repo / path}")
