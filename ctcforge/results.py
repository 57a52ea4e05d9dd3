"""Reading the results a language repo's tools left in it: eval.py's results and summaries,
the Trainer's log history, what `ctcforge lm --tune-*` measured and what `ctcforge export`
checked. (The training run's own records are read by `runtime.repo_files`, with every
other file name of a repo.)

Reading is kept apart from the card, which only turns these records into markdown, so the
demo and `ctcforge push` read the same files the same way. Each reader raises one-line
CtcforgeErrors naming the file and how to rewrite it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ctcforge.lm_text import synthetic_release_locale
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import RESULTS_SUFFIX, SUMMARY_SUFFIX, TRAINER_STATE_FILE, read_json
from ctcforge.spec import MAX_REPORTED_RATE

# Where `ctcforge card` looks for eval.py outputs: the repo root (decoder unknown) and
# eval/greedy, eval/lm, the folders ctcforge's own runs write to.
DECODER_FOLDERS = {"greedy": "without_lm", "lm": "with_lm"}
# The metrics eval.py writes into its results file, as `WER: 0.25` lines.
RESULT_METRICS = ("wer", "cer")
LM_TUNING_DIR = "lm_tuning"


@dataclass
class EvalFigures:
    """One eval.py run: its dataset and decoder, and what it measured."""

    dataset: str  # dataset name as eval.py's dataset_id has it (Hub id or folder name)
    config: str | None
    split: str
    decoder: str  # "without_lm", "with_lm" or "unknown"
    metrics: dict[str, float]
    path: Path | None = None  # the results file
    # Whether the run measured the split (its summary's `complete`); a 2022 run without a
    # summary evaluated the split it was given. Rows evaluated, of the split's.
    complete: bool = True
    evaluated: int | None = None
    split_rows: int | None = None
    synthetic: bool = False  # a `ctcforge synth` release: espeak-ng's speech, not people's

    @property
    def label(self) -> str:
        said = "synthetic (espeak-ng) " if self.synthetic else ""
        return said + " ".join(part for part in (self.dataset, self.config) if part) + f" ({self.split})"


# ---------------------------------------------------------------------------- eval.py

def parse_eval_results(path: Path) -> dict[str, float]:
    """One `*_eval_results.txt`: {"wer": 0.25, "cer": 0.08} from its `WER: x` / `CER: y` lines,
    each a finite fraction of 0 or more, each given once."""
    metrics = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        name = key.strip().lower()
        if name not in RESULT_METRICS:
            continue
        if name in metrics:
            raise CtcforgeError(f"{path}: two {name.upper()} lines; one eval.py run writes one of each: rerun eval.py")
        try:
            metrics[name] = float(value)
        except ValueError:
            raise CtcforgeError(f"{path}: {line!r} is not 'WER: <number>'; rerun eval.py") from None
        if not math.isfinite(metrics[name]) or metrics[name] < 0:
            raise CtcforgeError(f"{path}: {line!r}: an error rate is a finite fraction of 0 or more "
                                "(0.25 = 25%); rerun eval.py")
    if not metrics:
        raise CtcforgeError(f"{path}: expected lines 'WER: <number>' and 'CER: <number>'; rerun eval.py")
    return metrics


def read_eval_results(repo: Path) -> list[EvalFigures]:
    """Every `*_eval_results.txt` in the repo root and in eval/greedy, eval/lm."""
    places = [(repo, "unknown")] + [(repo / "eval" / folder, side) for folder, side in DECODER_FOLDERS.items()]
    figures = []
    for folder, decoder in places:
        for path in sorted(folder.glob(f"*{RESULTS_SUFFIX}")):
            dataset_id = path.name[: -len(RESULTS_SUFFIX)]
            metrics = parse_eval_results(path)
            summary = read_summary(folder / f"{dataset_id}{SUMMARY_SUFFIX}", path, metrics)
            for metric, value in metrics.items():
                # eval.py writes fractions, and its summary confirms a large one it measured.
                if value > MAX_REPORTED_RATE and (summary or {}).get(metric) != value:
                    raise CtcforgeError(f"{path}: {metric.upper()} {value} looks like a percentage; eval.py writes "
                                        "fractions (0.25 = 25%): rerun eval.py, or divide it by 100")
            if summary is not None and "dataset_name" in summary:
                # The dataset as eval.py was given it: a file name cannot say which "_" are
                # the dataset's own, nor that there was no config.
                parts = [summary["dataset_name"], summary.get("config"), summary["split"]]
            else:  # eval.py before it recorded the dataset
                parts = dataset_id.rsplit("_", 2)
                if len(parts) != 3:
                    raise CtcforgeError(f"{path}: name is not <dataset>_<config>_<split>{RESULTS_SUFFIX}, and no "
                                        f"{SUMMARY_SUFFIX} beside it says; rerun eval.py")
            decoder = DECODER_FOLDERS.get((summary or {}).get("decoder"), decoder)
            summary = summary or {}
            figures.append(EvalFigures(*parts, decoder=decoder, metrics=metrics, path=path,
                                       complete=summary.get("complete", True) is not False,
                                       evaluated=summary.get("evaluated"), split_rows=summary.get("split_rows"),
                                       synthetic=bool(summary.get("dataset") and synthetic_release_locale(
                                           summary["dataset"], summary.get("config")))))
    return figures


def read_summary(path: Path, results: Path, metrics: dict[str, float]) -> dict | None:
    """eval.py's summary beside a results file, checked to be of the same run: it records
    the figures it was written with (older runs recorded none, and no dataset)."""
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        summary = None
    if not isinstance(summary, dict):
        raise CtcforgeError(f"{path}: not eval.py's summary JSON; delete it or rerun eval.py")
    for metric, value in metrics.items():
        if metric in summary and summary[metric] != value:
            raise CtcforgeError(f"{path} is not of the run that wrote {results.name} ({metric.upper()} "
                                f"{summary[metric]} there, {value} here); rerun eval.py")
    return summary


# ---------------------------------------------------------------------------- training

def read_log_history(folder: Path) -> list[dict]:
    """trainer_state.json's log history; empty when there is no such file."""
    state = read_json(folder / TRAINER_STATE_FILE) or {}
    history = state.get("log_history", [])
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        raise CtcforgeError(f"{folder / TRAINER_STATE_FILE}: log_history is not a list of records; "
                            "delete the file or train again to rewrite it")
    return history


# ---------------------------------------------------------------------------- LM tuning

def read_lm_tuning(repo: Path) -> dict | None:
    """What `ctcforge lm --tune-*` wrote to lm_tuning/best.json, plus its heatmap's path."""
    best = repo / LM_TUNING_DIR / "best.json"
    if not best.is_file():
        return None
    try:
        tuning = json.loads(best.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CtcforgeError(f"{best}: not JSON ({exc}); rerun `ctcforge lm` with --tune-*") from None
    heatmap = repo / LM_TUNING_DIR / "wer_heatmap.png"
    if heatmap.is_file():
        tuning["heatmap"] = f"{LM_TUNING_DIR}/{heatmap.name}"
    return tuning


def read_onnx_export(repo: Path) -> dict | None:
    """onnx/export.json as `ctcforge export` wrote it, with "int8" telling whether the
    quantised model is there too; None when the repo has no ONNX model."""
    from ctcforge.export import EXPORT_DIR, INT8_MODEL_FILE, MODEL_FILE, SETTINGS_FILE

    folder = repo / EXPORT_DIR
    if not (folder / MODEL_FILE).is_file():
        return None
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CtcforgeError(f"{folder / SETTINGS_FILE}: unreadable ({exc}); run `ctcforge export {repo}` again") from None
    return {**settings, "int8": (folder / INT8_MODEL_FILE).is_file()}
