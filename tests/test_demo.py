"""`ctcforge demo` end to end on a small budget: every stage leaves its files, the card and
the table report the measured rates, and a rerun skips every stage."""

import json
import os
import shutil

import pytest
from conftest import needs_speech
from huggingface_hub import ModelCard

from ctcforge import demo as demo_module
from ctcforge.cli import main
from ctcforge.runtime.beam_search import PYTHON_ENGINE
from ctcforge.runtime.errors import CtcforgeError

pytestmark = needs_speech


@pytest.fixture(scope="module")
def finished_demo(tmp_path_factory):
    """A demo with 21 seconds of training: enough to run every stage, not to learn much."""
    out = tmp_path_factory.mktemp("demo")
    patch = pytest.MonkeyPatch()
    patch.setattr(demo_module, "training_budget", lambda demo: 0.35)
    # 21 seconds leave the model on the blank plateau; the stages after training are what
    # these tests are about, so the demo is told to go on regardless.
    patch.setattr(demo_module, "PLATEAU_CER", float("inf"))
    patch.setattr(demo_module, "DEMO_TUNING_GRID", {"alphas": (0.0, 1.0), "betas": (0.0,), "beam_widths": (8,)})
    # Logged often enough that 21 seconds of training still draws a curve of several points.
    arguments = list(demo_module.TRAINING_ARGS)
    arguments[arguments.index("--logging_steps") + 1] = "2"
    patch.setattr(demo_module, "TRAINING_ARGS", tuple(arguments))
    lines = []
    try:
        results = demo_module.run_demo("hy-AM", minutes=5, output_dir=out, num_clips=60, log=lines.append)
        rerun_lines = []
        rerun = demo_module.run_demo("hy-AM", minutes=5, output_dir=out, num_clips=60, log=rerun_lines.append)
    finally:
        patch.undo()
    return out, results, lines, rerun, rerun_lines


def test_every_stage_leaves_its_files(finished_demo):
    out, _, _, _, _ = finished_demo
    repo = out / "repo"
    for path in ("model.safetensors", "alphabet.json", "language_model/lm.binary", "lm_tuning/best.json",
                 "lm_tuning/wer_heatmap.png", "training_curve.png", "train.log"):
        assert (repo / path).is_file(), path
    hyper = json.loads((repo / "training_hyperparameters.json").read_text())
    assert hyper["training_time_budget_minutes"] > 0 and hyper["training_steps"] >= 1


def test_table_and_card_report_the_measured_rates(finished_demo):
    out, results, lines, _, _ = finished_demo
    repo = out / "repo"
    for decoder in ("greedy", "lm"):
        measured = next((repo / "eval" / decoder).glob("*_eval_results.txt")).read_text().splitlines()
        assert results[decoder] == {"wer": float(measured[0][5:]), "cer": float(measured[1][5:])}
    table = "\n".join(lines)
    assert f"{results['greedy']['wer']:>8.3f}{results['greedy']['cer']:>8.3f}" in table
    assert "[ctc_with_lm]" in table  # pipeline() loaded the repo with its LM
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    names = {r.metric_name for r in card.data.eval_results}
    assert {"Test WER", "Test CER", "Test WER (with LM)", "Test CER (with LM)"} <= names
    assert "![Training curve](training_curve.png)" in card.text and "## Language model" in card.text


def test_rerun_skips_every_stage_and_gives_the_same_table(finished_demo):
    _, results, _, rerun, rerun_lines = finished_demo
    assert rerun == results
    skipped = [line for line in rerun_lines if line.startswith("skipped:")]
    assert len(skipped) == 6, rerun_lines  # synthesis, stamp, training, LM, two eval runs


def test_a_model_left_on_the_blank_plateau_stops_the_demo_before_the_lm(finished_demo, tmp_path, capsys):
    """A budget too short for the machine: the demo says so in one line instead of tuning an
    LM on a model that writes nothing (the 21-second model above has a dev CER near 1)."""
    out, _, _, _, _ = finished_demo
    repo = tmp_path / "demo" / "repo"
    shutil.copytree(out / "cv", tmp_path / "demo" / "cv", symlinks=True)
    shutil.copytree(out / "repo", repo, symlinks=True)
    for built in ("alphabet.json", "language_model", "lm_tuning", "eval"):
        shutil.rmtree(repo / built) if (repo / built).is_dir() else (repo / built).unlink()
    cer = json.loads((repo / "eval_results.json").read_text())["eval_cer"]
    assert cer > demo_module.PLATEAU_CER, "the fixture's model learned more than 21 seconds should allow"
    assert main(["demo", "--minutes", "5", "--num-clips", "60", "--output-dir", str(tmp_path / "demo")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ctcforge: error:")]
    assert len(errors) == 1, errors
    error = errors[0]
    assert error.startswith("ctcforge: error: the model is still on the blank plateau after")
    assert f"dev CER {cer:.2f}" in error and "--minutes 10" in error
    assert not (repo / "language_model" / "lm.binary").exists() and not (repo / "eval").exists()


def test_too_small_a_budget_is_one_line_naming_the_fix(tmp_path, capsys):
    assert main(["demo", "--minutes", "2", "--output-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ctcforge: error: --minutes 2 leaves no time to train") and "\n" not in error
    with pytest.raises(CtcforgeError, match="at least 4"):
        demo_module.run_demo(minutes=3, output_dir=tmp_path)


class FakeClock:
    """Seconds that pass only when a grid cell finishes."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def finishing_cells(cells, clock, seconds_each=10.0):
    for cell in cells:
        clock.now += seconds_each
        yield cell, [f"text of {cell}"]


DEFAULTS = (0.5, 1.5, 100)
OTHERS = [(0.0, 0.0, 32), (1.0, 0.0, 32), (2.0, 3.0, 32), (0.0, 1.5, 32)]


@pytest.mark.parametrize("cells, deadline, scored", [
    ([DEFAULTS, *OTHERS], None, 5),            # no deadline: the whole grid
    ([DEFAULTS, *OTHERS], 25.0, 3),            # cells end at 10, 20, 30: the one ending past 25 is the last
    ([DEFAULTS, *OTHERS], 0.0, 1),             # out of time already: only pyctcdecode's defaults
    ([*OTHERS[:2], DEFAULTS, *OTHERS[2:]], 0.0, 3),  # ... which are waited for when they come late
])
def test_the_lm_grid_stops_at_its_deadline_once_the_defaults_are_scored(cells, deadline, scored):
    from ctcforge.lm_tuning import until_deadline

    clock = FakeClock()
    taken = list(until_deadline(finishing_cells(cells, clock), deadline, DEFAULTS, clock=clock))
    assert [cell for cell, _ in taken] == cells[:scored]
    assert DEFAULTS in [cell for cell, _ in taken]


def test_the_demo_gives_the_lm_grid_what_its_budget_leaves_for_it(tmp_path, monkeypatch):
    """Seven minutes into a ten-minute demo, the grid must stop when only the time the
    evaluations, the card and the pipeline need is left."""
    import time

    from ctcforge import lm, lm_tuning

    asked = {}
    monkeypatch.setattr(lm, "build_language_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(lm_tuning, "tune_language_model", lambda *args, **kwargs: asked.update(kwargs))
    demo = demo_module.Demo("hy-AM", 10.0, tmp_path, started=time.monotonic() - 7 * 60, log=lambda line: None)
    demo_module.build_lm(demo)
    left = asked["deadline"] - time.monotonic()
    assert left == pytest.approx((10 - 7 - demo_module.AFTER_TUNING_MINUTES) * 60, abs=5)


class InstantDecoder:
    """A decoder that returns every beam search at once, for the grid's clock."""

    engine = PYTHON_ENGINE

    def with_weights(self, alpha, beta):
        return self

    def best_text(self, logits, beam_width):
        return "the same words"


def test_a_grid_past_its_deadline_scores_the_defaults_and_says_so_in_one_line(monkeypatch):
    from ctcforge.lm_tuning import DevSet, TuningGrid, score_grid
    from ctcforge.runtime import beam_search

    dev = DevSet(log_probs=[None, None], references=["a", "b"], greedy=["a", "b"])
    grid = TuningGrid(alphas=(0.0, 1.0), betas=(0.0,), beam_widths=(8,)).with_defaults()
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one worker: the cells come in the order asked
    lines = []
    scores = score_grid(beam_search, InstantDecoder(), dev, grid, normalizer=str,
                        error_rates=lambda refs, hyps, n: (1.0, 1.0), progress=False, deadline=0.0,
                        log=lines.append)
    assert [(s.alpha, s.beta, s.beam_width) for s in scores] == [DEFAULTS]
    assert lines == [f"LM grid stopped at its deadline after 1 of {len(grid.cells())} cells; "
                     "the best of those is chosen"]
