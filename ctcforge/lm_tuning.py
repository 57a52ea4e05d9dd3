"""LM weight tuning: the alpha, beta and beam width that decode a dev split best.

The acoustic model runs once over the dev split through the runtime's `transcription`
(eval.py's Transcriber, so the log-probs have the frames eval.py decodes) and its
log-probabilities are cached in `.ctcforge-cache/dev_logits-<key>.npz`, keyed by the model
weights and the dataset, so a rebuilt LM is tuned again without running the model. Every
cell of the grid decodes the cached log-probs with the repo's LM, loaded and searched by
the runtime's `beam_search` (the best beam of `decode_beams`, in C++ or pyctcdecode,
over a pool of workers), the search eval.py runs;
WER and CER come from the runtime's `error_rates`, the definition eval.py uses, with the
repo's normaliser: the rules in its `language_profile.json`, the one place where the tool
reads what a user changed in a repo.
The grid always holds pyctcdecode's defaults (alpha 0.5, beta 1.5, beam width 100), so the
chosen weights are never worse than them on the dev split.

Written into the repo: the best alpha and beta in `language_model/attrs.json`, and in
`lm_tuning/`: `wer_grid.csv` (alpha,beta,beam_width,wer,cer), `wer_heatmap.png` (WER over
alpha x beta at the best beam width) and `best.json`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import numpy as np

from ctcforge.lm import CACHE_DIR, TUNING_DIR, default_weights
from ctcforge.lm_folder import check_language_model_dir, load_repo_decoder, update_attrs
from ctcforge.lm_text import repo_normalizer
from ctcforge.runtime import beam_search, transcription
from ctcforge.runtime.atomic import replacing
from ctcforge.runtime.error_rates import error_rates
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import LANGUAGE_MODEL_DIR, PREPROCESSOR_FILE

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
DEFAULT_BEAM_WIDTHS = (25, 50, 100)
CACHE_VERSION = 2  # 2: log-probs from eval.py's Transcriber, frames from each clip's own input length
WEIGHT_SUFFIXES = (".safetensors", ".bin")
MIN_SECONDS = 0.1  # shorter dev clips hold no speech worth tuning on, and can give no frames


@dataclass(frozen=True)
class TuningGrid:
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    betas: tuple[float, ...] = DEFAULT_BETAS
    beam_widths: tuple[int, ...] = DEFAULT_BEAM_WIDTHS

    def with_defaults(self) -> "TuningGrid":
        """The grid with pyctcdecode's defaults added, so they are always compared."""
        alpha, beta = default_weights()
        return TuningGrid(tuple(sorted({*map(float, self.alphas), alpha})),
                          tuple(sorted({*map(float, self.betas), beta})),
                          tuple(sorted({*map(int, self.beam_widths), default_beam_width()})))

    def cells(self) -> list[tuple[float, float, int]]:
        return list(product(self.alphas, self.betas, self.beam_widths))


@dataclass(frozen=True)
class Score:
    alpha: float
    beta: float
    beam_width: int
    wer: float
    cer: float


@dataclass
class DevSet:
    """The dev split as tuning needs it: one (frames, labels) log-prob array per clip, its
    normalised reference, and its greedy text as eval.py and the pipeline make it."""

    log_probs: list[np.ndarray]
    references: list[str]
    greedy: list[str]


def default_beam_width() -> int:
    from ctcforge.runtime.beam_search import DEFAULT_BEAM_WIDTH

    return DEFAULT_BEAM_WIDTH


def tune_language_model(repo: Path, dataset: str, config: str | None, split: str = "dev", *,
                        text_column: str = "sentence", grid: TuningGrid = TuningGrid(),
                        max_clips: int | None = None, batch_size: int = 8, progress: bool = True,
                        deadline: float | None = None, log=print) -> dict:
    """Tunes the repo's LM weights on a dev split; returns what best.json holds. With a
    `deadline` (a time.monotonic() value), the grid stops at the first cell finished after
    it, once pyctcdecode's defaults are scored, and the best cell scored so far is chosen."""
    repo = Path(repo)
    try:
        check_language_model_dir(repo)
    except CtcforgeError as exc:
        raise CtcforgeError(f"{exc}; build the LM first: ctcforge lm {repo} --text FILE") from exc
    grid = grid.with_defaults()
    normalizer = repo_normalizer(repo)
    config = config or normalizer.profile.get("code")  # as for `ctcforge new --dataset`
    # Loaded once, as eval.py loads it, and before the model runs over the dev split: an
    # LM that does not fit the model stops at once.
    decoder = load_repo_decoder(repo, beam_search)
    dev = cached_dev_set(repo, dataset, config, split, text_column, normalizer, max_clips, batch_size, log)
    scores = score_grid(beam_search, decoder, dev, grid, normalizer, error_rates, progress, deadline, log)
    greedy_wer, greedy_cer = error_rates(dev.references, dev.greedy, normalizer)
    best = best_score(scores)
    default = next(s for s in scores if (s.alpha, s.beta, s.beam_width) == (*default_weights(),
                                                                            default_beam_width()))
    update_attrs(repo / LANGUAGE_MODEL_DIR, best.alpha, best.beta)
    summary = {**asdict(best), "greedy_wer": greedy_wer, "greedy_cer": greedy_cer, "default_wer": default.wer,
               "default_cer": default.cer, "dev_clips": len(dev.references), "grid_cells": len(scores),
               "grid_cells_planned": len(grid.cells()),
               "dataset": dataset,
               "config": config, "split": split}
    write_tuning_files(repo / TUNING_DIR, scores, best, summary)
    log(f"tuned on {len(dev.references)} {split} clips: alpha {best.alpha}, beta {best.beta}, beam width "
        f"{best.beam_width}: WER {best.wer:.4f} (defaults {default.wer:.4f}, greedy {greedy_wer:.4f}); "
        f"wrote {repo / LANGUAGE_MODEL_DIR / 'attrs.json'} and {repo / TUNING_DIR}/")
    return summary


# ---------------------------------------------------------------------------- dev log-probs


def cached_dev_set(repo: Path, dataset: str, config: str | None, split: str, text_column: str, normalizer,
                   max_clips: int | None, batch_size: int, log) -> DevSet:
    from ctcforge.runtime.speech_data import load_speech_dataset

    sampling_rate = json.loads((repo / PREPROCESSOR_FILE).read_text(encoding="utf-8"))["sampling_rate"]
    rows = load_speech_dataset(dataset, config, split, text_column=text_column, sampling_rate=sampling_rate)
    if max_clips is not None:
        rows = rows.select(range(min(max_clips, len(rows))))
    path = repo / CACHE_DIR / f"dev_logits-{cache_key(repo, dataset, config, split, rows[text_column])}.npz"
    if path.is_file():
        log(f"{split} log-probs from {path}")
        return load_dev_set(path)
    dev = compute_dev_set(repo, rows, text_column, normalizer, batch_size, log)
    if not dev.references:
        raise CtcforgeError(f"no clip of {dataset} ({split}) could be decoded; see the skipped clips above")
    save_dev_set(dev, path)
    log(f"{split} log-probs of {len(dev.references)} clips cached in {path}")
    return dev


def cache_key(repo: Path, dataset: str, config: str | None, split: str, texts: list[str]) -> str:
    """What the log-probs depend on: the weights (by size and modification time: hashing
    gigabytes of weights would cost more than it saves), the model and feature extractor
    settings, and the dataset's name, split and text."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}\n".encode())
    for path in sorted(repo.iterdir()):
        if path.suffix in WEIGHT_SUFFIXES and path.is_file():
            stat = path.stat()
            digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    digest.update((repo / "config.json").read_bytes())
    features = json.loads((repo / PREPROCESSOR_FILE).read_text(encoding="utf-8"))
    features.pop("processor_class", None)  # set by `ctcforge lm`; the log-probs do not depend on it
    digest.update(json.dumps(features, sort_keys=True).encode())
    local = Path(dataset).expanduser()
    digest.update(json.dumps([str(local.resolve()) if local.is_dir() else dataset, config, split]).encode())
    for text in texts:
        digest.update((text or "").encode() + b"\0")
    return digest.hexdigest()[:16]


def compute_dev_set(repo: Path, rows, text_column: str, normalizer, batch_size: int, log) -> DevSet:
    """Each usable clip's log-probs, normalised reference and greedy text. The model runs
    through the repo's own transcription.py, eval.py's Transcriber: length-sorted batches,
    no gradients, each clip keeping the frames it gets alone (`ctc_frames.output_frames`
    of its own input length), so the log-probs are the ones eval.py decodes. Clips with no
    words in their normalised reference, or with audio that cannot be read or is too
    short, are skipped and counted."""
    import torch

    transcriber = transcription.Transcriber(str(repo), torch.device("cpu"), batch_size)
    clips, skipped = readable_clips(rows, text_column, normalizer, transcriber.sampling_rate)
    if skipped:
        log(f"skipped {sum(skipped.values())} clips: "
            + ", ".join(f"{count} {reason}" for reason, count in skipped.most_common()))
    logits = transcriber.clip_logits([audio for _, audio in clips])
    log_probs = [torch.log_softmax(torch.from_numpy(clip), -1).numpy() for clip in logits]
    # Greedy text as eval.py and the pipeline make it: the CTC tokenizer merges repeats,
    # drops blanks and turns the word delimiter into a space.
    greedy = [normalizer(transcriber.tokenizer.decode(lp.argmax(-1).tolist())) for lp in log_probs]
    return DevSet(log_probs=log_probs, references=[reference for reference, _ in clips], greedy=greedy)


def readable_clips(rows, text_column: str, normalizer, sampling_rate: int):
    """(normalised reference, audio) of each usable row, and a count of the others by reason."""
    from ctcforge.runtime.skip_reasons import EMPTY_AFTER_NORMALISATION, TOO_SHORT_FOR_MODEL, UNREADABLE_AUDIO
    from ctcforge.runtime.speech_data import decode_audio

    clips, skipped = [], Counter()
    for row, text in enumerate(rows[text_column]):
        reference = normalizer(text or "")
        if not normalizer.split_words(reference):
            skipped[EMPTY_AFTER_NORMALISATION] += 1
            continue
        try:
            audio = decode_audio(rows[row]["audio"], sampling_rate).samples
        except Exception:  # torchcodec raises several types for broken files
            skipped[UNREADABLE_AUDIO] += 1
            continue
        if len(audio) < MIN_SECONDS * sampling_rate:
            skipped[TOO_SHORT_FOR_MODEL] += 1
            continue
        clips.append((reference, np.asarray(audio, dtype=np.float32)))
    return clips, skipped


def save_dev_set(dev: DevSet, path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    # Through an open file: given a name, np.savez would add ".npz" to the temporary one.
    with replacing(path) as temporary, open(temporary, "wb") as file:
        np.savez(file, frames=np.concatenate(dev.log_probs), lengths=np.array([len(lp) for lp in dev.log_probs]),
                 references=np.array(dev.references, dtype=str), greedy=np.array(dev.greedy, dtype=str))


def load_dev_set(path: Path) -> DevSet:
    with np.load(path, allow_pickle=False) as saved:
        ends = np.cumsum(saved["lengths"])
        log_probs = np.split(saved["frames"], ends[:-1])
        return DevSet(log_probs=log_probs, references=saved["references"].tolist(),
                      greedy=saved["greedy"].tolist())


# ---------------------------------------------------------------------------- the grid


def score_grid(beam_search, decoder, dev: DevSet, grid: TuningGrid, normalizer, error_rates, progress: bool,
               deadline: float | None = None, log=print) -> list[Score]:
    """WER and CER of every grid cell (or of those finished by `deadline`), one alpha and
    beta a task over a pool of workers, pyctcdecode's defaults first. `beam_search` is the
    runtime's beam_search module and `decoder` the LM decoder it loaded: the search eval.py runs."""
    from tqdm.auto import tqdm

    required = (*default_weights(), default_beam_width())
    cells = sorted(grid.cells(), key=lambda cell: cell != required)
    scores = []
    # One worker per core, at most one per weight pair.
    workers = min(os.cpu_count() or 1, len({(alpha, beta) for alpha, beta, _ in cells}))
    with beam_search.BeamSearch(decoder, workers, dev.log_probs) as search, \
            tqdm(total=len(cells), desc="LM grid", disable=not progress, leave=False) as bar:
        for (alpha, beta, beam_width), predictions in until_deadline(search.decode_grid(cells), deadline, required):
            wer, cer = error_rates(dev.references, [normalizer(p) for p in predictions], normalizer)
            scores.append(Score(alpha, beta, beam_width, wer, cer))
            bar.update(1)
    if len(scores) < len(cells):
        log(f"LM grid stopped at its deadline after {len(scores)} of {len(cells)} cells; the best of those is chosen")
    return sorted(scores, key=lambda s: (s.beam_width, s.alpha, s.beta))


def until_deadline(results, deadline: float | None, required: tuple, clock=time.monotonic):
    """The (cell, texts) results as they come, ending with the first one that finishes
    after `deadline`, provided the `required` cell has come by then (it is waited for)."""
    required_seen = False
    for cell, texts in results:
        yield cell, texts
        required_seen = required_seen or tuple(cell) == tuple(required)
        if deadline is not None and required_seen and clock() >= deadline:
            return


def best_score(scores: list[Score]) -> Score:
    """Lowest WER, then CER; ties go to the smaller beam (faster), then to the weights
    nearest pyctcdecode's defaults."""
    alpha, beta = default_weights()
    return min(scores, key=lambda s: (s.wer, s.cer, s.beam_width, abs(s.alpha - alpha) + abs(s.beta - beta)))


# ---------------------------------------------------------------------------- outputs


def write_tuning_files(folder: Path, scores: list[Score], best: Score, summary: dict) -> None:
    folder.mkdir(exist_ok=True)
    with open(folder / "wer_grid.csv", "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["alpha", "beta", "beam_width", "wer", "cer"])
        writer.writerows([s.alpha, s.beta, s.beam_width, s.wer, s.cer] for s in scores)
    draw_heatmap([s for s in scores if s.beam_width == best.beam_width], best, folder / "wer_heatmap.png")
    (folder / "best.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def draw_heatmap(scores: list[Score], best: Score, path: Path) -> None:
    """WER over alpha (rows) x beta (columns), each cell labelled, the best one outlined.
    A bare Figure renders with Agg and leaves pyplot's global backend alone."""
    from matplotlib.figure import Figure

    alphas = sorted({s.alpha for s in scores})
    betas = sorted({s.beta for s in scores})
    wer = np.full((len(alphas), len(betas)), np.nan)
    for s in scores:
        wer[alphas.index(s.alpha), betas.index(s.beta)] = s.wer
    figure = Figure(figsize=(1.5 + 0.8 * len(betas), 1.2 + 0.6 * len(alphas)), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(wer, cmap="viridis_r", aspect="auto", origin="lower")
    for row, column, value in scored_cells(wer):
        # viridis_r is light at low WER: dark text there, light text on the dark cells
        dark_cell = image.norm(value) > 0.5
        axes.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=7,
                  color="white" if dark_cell else "black")
    default_alpha, default_beta = default_weights()
    if default_alpha in alphas and default_beta in betas:
        outline_cell(axes, alphas.index(default_alpha), betas.index(default_beta), "grey", "--")
    outline_cell(axes, alphas.index(best.alpha), betas.index(best.beta), "red", "-")
    axes.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    axes.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    axes.set_xlabel("beta (word insertion bonus)")
    axes.set_ylabel("alpha (LM weight)")
    unscored = int(np.isnan(wer).sum())
    cut = f"\n{wer.size - unscored} of {wer.size} cells scored before the deadline" if unscored else ""
    axes.set_title(f"dev WER at beam width {best.beam_width}\nbest: red; pyctcdecode defaults: dashed{cut}",
                   fontsize=9)
    figure.colorbar(image, ax=axes, label="WER")
    figure.savefig(path, dpi=100)


def scored_cells(wer: np.ndarray) -> list[tuple[int, int, float]]:
    """(row, column, WER) of each cell the grid scored: a cell its deadline left unscored
    is left blank, never labelled `nan`."""
    return [(row, column, float(value)) for (row, column), value in np.ndenumerate(wer) if np.isfinite(value)]


def outline_cell(axes, row: int, column: int, colour: str, style: str) -> None:
    from matplotlib.patches import Rectangle

    axes.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=colour, linestyle=style,
                             linewidth=2.5))
