"""The card: YAML from huggingface_hub's data model, rebuilt from repo artefacts, person's text kept."""

import argparse
import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from repo_script import imported_script
from transformers import HfArgumentParser

from ctcforge.answers import Answers
from ctcforge.card import CardFacts, check_card, facts_from_answers, rebuild_card, render_card, write_card
from ctcforge.catalogue import resolve_base_model
from ctcforge.languages import load_profile
from ctcforge.new import new_repo
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.spec import spec_from_dict

HY = load_profile("hy-AM")


def result(dataset_name="Common Voice hy-AM", dataset_type="mozilla-foundation/common_voice_8_0",
           value=0.25):
    return {"task": {"type": "automatic-speech-recognition", "name": "Speech Recognition"},
            "dataset": {"type": dataset_type, "name": dataset_name, "args": "hy-AM"},
            "metrics": [{"type": "wer", "name": "Test WER", "value": value}]}


def facts(**changes):
    base = CardFacts(language="hy-AM", profile=HY, model_name="m", base_model="facebook/wav2vec2-xls-r-300m",
                     results=[result()])
    return replace(base, **changes)


@pytest.mark.parametrize("field, value", [
    ("dataset_name", "Common Voice: hy-AM #8"),
    ("dataset_name", "the \"quoted\" 'set'"),
    ("dataset_name", "yes"),
    ("dataset_type", "org/name:with-colon"),
    ("dataset_name", "100"),
])
def test_awkward_dataset_names_round_trip_exactly(field, value):
    card = ModelCard(render_card(facts(results=[result(**{field: value})])))
    parsed = card.data.eval_results[0]
    assert getattr(parsed, field) == value


def test_language_no_round_trips_as_the_string_no():
    norwegian = replace(HY, code="no", name="Norwegian")
    text = render_card(facts(profile=norwegian))
    assert ModelCard(text).data.language == ["no"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_metrics_are_refused(bad):
    with pytest.raises(CtcforgeError, match="finite"):
        render_card(facts(results=[result(value=bad)]))


def test_spec_refuses_newlines_and_nan_naming_the_field():
    data = {"language": "hy-AM", "model_name": "m", "base_model": "tiny", "results": [result()]}
    data["results"][0]["dataset"]["name"] = "two\nlines"
    with pytest.raises(CtcforgeError, match=r"my\.yaml.*results\[0\]\.dataset\.name.*one line"):
        spec_from_dict(data, source="my.yaml")
    data["results"][0]["dataset"]["name"] = "ok"
    data["results"][0]["metrics"][0]["value"] = float("nan")
    with pytest.raises(CtcforgeError, match=r"results\[0\]\.metrics\[0\]\.value"):
        spec_from_dict(data, source="my.yaml")
    with pytest.raises(CtcforgeError, match=r"my\.yaml.*'modelname'.*unknown field"):
        spec_from_dict({"modelname": "x"}, source="my.yaml")


def test_rebuild_keeps_text_written_outside_generated_sections(tmp_path):
    write_card(facts(), tmp_path)
    path = tmp_path / "README.md"
    text = path.read_text(encoding="utf-8")
    mine = "\n## Notes from the author\n\nTrained on my own recordings too.\n"
    text = text.replace("<!-- ctcforge:begin usage -->", mine + "<!-- ctcforge:begin usage -->")
    # A hand edit inside a generated section is replaced on the next build.
    text = text.replace("## Usage", "## Usage EDITED")
    path.write_text(text + "\nClosing words.\n", encoding="utf-8")
    write_card(facts(model_name="renamed"), tmp_path)
    rebuilt = path.read_text(encoding="utf-8")
    assert mine.strip() in rebuilt and rebuilt.rstrip().endswith("Closing words.")
    assert "EDITED" not in rebuilt and "## Usage" in rebuilt
    assert ModelCard(rebuilt).data.model_name == "renamed"
    assert rebuilt.count("<!-- ctcforge:begin usage -->") == 1


def test_card_command_reads_eval_results_and_trainer_state(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    for decoder, wer, cer in (("greedy", 0.5, 0.2), ("lm", 0.3, 0.1)):
        folder = repo / "eval" / decoder
        folder.mkdir(parents=True)
        (folder / "cv-corpus_hy-AM_test_eval_results.txt").write_text(f"WER: {wer}\nCER: {cer}")
    state = {"log_history": [
        {"loss": 3.5, "epoch": 0.5, "step": 50},
        {"eval_loss": 3.1, "eval_wer": 1.0, "eval_cer": 0.9, "epoch": 1.0, "step": 100},
        {"loss": 2.0, "epoch": 1.5, "step": 150},
        {"eval_loss": 1.2, "eval_wer": 0.6, "eval_cer": 0.25, "epoch": 2.0, "step": 200},
    ]}
    (repo / "trainer_state.json").write_text(json.dumps(state))
    (repo / "training_hyperparameters.json").write_text(json.dumps({"learning_rate": 0.001, "seed": 7}))
    rebuild_card(repo)
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    # New sections go where the card order puts them, not after the framework versions.
    positions = [card.text.index(f"<!-- ctcforge:begin {name} -->")
                 for name in ("description", "usage", "evaluation", "training", "framework")]
    assert positions == sorted(positions)
    assert "trained from scratch" in card.text
    values = {(r.metric_name, r.dataset_split): r.metric_value for r in card.data.eval_results}
    assert values == {("Test WER", "test"): 0.5, ("Test CER", "test"): 0.2,
                      ("Test WER (with LM)", "test"): 0.3, ("Test CER (with LM)", "test"): 0.1}
    assert "| w/o LM | WER | 0.5000 |" in card.text and "| w/ LM | WER | 0.3000 |" in card.text
    assert "| 2.0000 | 2.00 | 200 | 1.2000 | 0.6000 | 0.2500 |" in card.text
    assert "| 3.5000 | 1.00 | 100 | 3.1000 | 1.0000 | 0.9000 |" in card.text
    assert "- learning_rate: 0.001" in card.text and "- seed: 7" in card.text


def test_malformed_eval_results_file_is_an_error_naming_it(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "x_hy-AM_test_eval_results.txt").write_text("WER: lots\nCER: 0.1")
    with pytest.raises(CtcforgeError, match="x_hy-AM_test_eval_results.txt"):
        rebuild_card(repo)


@pytest.mark.parametrize("results, summary, message", [
    ("WER: 51.4\nCER: 20.3", None, "WER 51.4 looks like a percentage; eval.py writes fractions (0.25 = 25%)"),
    ("WER: -0.2\nCER: 0.1", None, "'WER: -0.2': an error rate is a finite fraction of 0 or more"),
    ("WER: nan\nCER: 0.1", None, "'WER: nan': an error rate is a finite fraction of 0 or more"),
    ("WER: 0.3\nCER: 0.1\nWER: 0.2", None, "two WER lines; one eval.py run writes one of each"),
    # eval.py measured a WER above 1.5 (a model that writes far more words than were said): kept
    ("WER: 1.9\nCER: 0.7", {"wer": 1.9, "cer": 0.7}, None),
])
def test_eval_results_hold_one_fraction_of_each_rate(tmp_path, results, summary, message):
    from ctcforge.results import read_eval_results

    (tmp_path / "cv_hy-AM_test_eval_results.txt").write_text(results)
    if summary is not None:
        (tmp_path / "cv_hy-AM_test_eval_summary.json").write_text(json.dumps(summary))
    if message is None:
        assert read_eval_results(tmp_path)[0].metrics == summary
        return
    with pytest.raises(CtcforgeError) as error:
        read_eval_results(tmp_path)
    assert message in str(error.value) and "cv_hy-AM_test_eval_results.txt" in str(error.value)
    assert "rerun eval.py" in str(error.value)


def test_card_and_demo_read_eval_results_with_one_parser(tmp_path):
    """The demo's table and the card read the same `WER: x` / `CER: y` file the same way,
    so a results file the card refuses cannot give the demo a figure."""
    from types import SimpleNamespace

    from ctcforge import demo
    from ctcforge.results import parse_eval_results

    for decoder, wer in (("greedy", "0.5"), ("lm", "0.25")):
        folder = tmp_path / "eval" / decoder
        folder.mkdir(parents=True)
        (folder / "cv_hy-AM_test_eval_results.txt").write_text(f"WER: {wer}\nCER: 0.125\nclips: 12\n")
    assert demo.read_results(SimpleNamespace(repo=tmp_path)) == {
        "greedy": {"wer": 0.5, "cer": 0.125}, "lm": {"wer": 0.25, "cer": 0.125}}
    bad = tmp_path / "eval" / "lm" / "cv_hy-AM_test_eval_results.txt"
    bad.write_text("WER: lots\n")
    with pytest.raises(CtcforgeError, match="is not 'WER: <number>'"):
        parse_eval_results(bad)
    with pytest.raises(CtcforgeError, match="is not 'WER: <number>'"):
        demo.read_results(SimpleNamespace(repo=tmp_path))


def test_card_sections_come_from_their_templates(tmp_path, monkeypatch):
    """Each generated section is its template in templates/card rendered over the facts; a
    fact a template names that the facts lack is an error naming the template, never a blank."""
    import jinja2

    from ctcforge import card as card_module

    templates = tmp_path / "card"
    for name in card_module.SECTION_ORDER:
        templates.mkdir(exist_ok=True)
        (templates / f"{name}.md.jinja").write_text(f"## {name} of {{{{ facts.model_name }}}}\n")
    # A cache of its own, so the real templates' compiled copies are untouched.
    monkeypatch.setattr(card_module._TEMPLATES, "loader", jinja2.FileSystemLoader(str(templates)))
    monkeypatch.setattr(card_module._TEMPLATES, "cache", None)
    sections = card_module.body_sections(facts())
    assert sections == {name: f"## {name} of m" for name in card_module.SECTION_ORDER}
    (templates / "usage.md.jinja").write_text("{{ facts.no_such_fact }}")
    with pytest.raises(CtcforgeError, match="usage.md.jinja.*no_such_fact"):
        card_module.body_sections(facts())


def test_card_draws_the_training_curve_and_links_it(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    history = [{"loss": 4.0 - step / 100, "step": step} for step in (10, 20, 30)]
    history.append({"eval_loss": 3.0, "eval_cer": 0.5, "step": 30})
    (repo / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    rebuild_card(repo)
    png = repo / "training_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    training = ModelCard((repo / "README.md").read_text(encoding="utf-8")).text
    assert "![Training curve](training_curve.png)" in training
    assert not list(repo.glob(".*.tmp"))


def test_no_curve_without_history(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 3.0, "step": 1}]}))
    rebuild_card(repo)
    assert not (repo / "training_curve.png").exists()
    assert "training_curve.png" not in (repo / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("decoder, name", [("greedy", "Test WER"), ("lm", "Test WER (with LM)")])
def test_root_results_take_their_decoder_from_eval_summary(tmp_path, decoder, name):
    # An LM folder is present, so without the summary the root result would count as "with LM".
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "language_model" / "lm.binary").write_bytes(b"x")
    (repo / "cv_hy-AM_test_eval_results.txt").write_text("WER: 0.4\nCER: 0.1")
    (repo / "cv_hy-AM_test_eval_summary.json").write_text(json.dumps({"decoder": decoder}))
    rebuild_card(repo)
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    assert {r.metric_name for r in card.data.eval_results} == {name, name.replace("WER", "CER")}


def test_a_dataset_without_config_or_with_underscores_is_read_from_the_summary(tmp_path):
    """A file name cannot say that `my_slr` is one name and that there was no config;
    eval.py's summary does."""
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "my_slr_test_eval_results.txt").write_text("WER: 0.4\nCER: 0.1")
    (repo / "my_slr_test_eval_summary.json").write_text(json.dumps(
        {"dataset": "/data/my_slr", "dataset_name": "my_slr", "config": None, "split": "test",
         "decoder": "greedy", "wer": 0.4, "cer": 0.1}))
    rebuild_card(repo)
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    assert {(r.dataset_type, r.dataset_name, r.dataset_split, r.dataset_args) for r in card.data.eval_results} == {
        ("my_slr", "my_slr (test)", "test", None)}
    assert {r.metric_name for r in card.data.eval_results} == {"Test WER", "Test CER"}


def test_a_summary_of_another_run_is_refused(tmp_path):
    """A summary left by an earlier run beside newer results would put its decoder on
    figures it did not measure."""
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "cv_hy-AM_test_eval_results.txt").write_text("WER: 0.4\nCER: 0.1")
    (repo / "cv_hy-AM_test_eval_summary.json").write_text(json.dumps(
        {"dataset_name": "cv", "config": "hy-AM", "split": "test", "decoder": "lm", "wer": 0.3, "cer": 0.1}))
    with pytest.raises(CtcforgeError, match=r"cv_hy-AM_test_eval_summary.json is not of the run that wrote "
                                            r"cv_hy-AM_test_eval_results.txt \(WER 0.3 there, 0.4 here\)"):
        rebuild_card(repo)


def test_lm_tuning_section_shows_the_chosen_weights_and_heatmap(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "lm_tuning").mkdir()
    (repo / "lm_tuning" / "best.json").write_text(json.dumps(
        {"alpha": 0.7, "beta": 1.5, "beam_width": 64, "wer": 0.31, "cer": 0.08, "greedy_wer": 0.5,
         "greedy_cer": 0.12, "default_wer": 0.35, "default_cer": 0.09, "dev_clips": 40,
         "dataset": "/data/cv-corpus", "config": "hy-AM", "split": "dev"}))
    (repo / "lm_tuning" / "wer_heatmap.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    rebuild_card(repo)
    text = (repo / "README.md").read_text(encoding="utf-8")
    assert "| LM, tuned | 0.7 | 1.5 | 64 | 0.3100 | 0.0800 |" in text
    assert "| greedy (no LM) | | | | 0.5000 | 0.1200 |" in text
    assert "| LM, pyctcdecode's default weights | | | | 0.3500 | 0.0900 |" in text
    assert "tuned on 40 clips of cv-corpus hy-AM (dev)" in text
    assert "![Dev WER over the alpha/beta grid](lm_tuning/wer_heatmap.png)" in text
    assert text.index("ctcforge:begin language-model") < text.index("ctcforge:begin framework")
    assert "stopped at its time limit" not in text


def test_a_grid_cut_by_its_deadline_says_so_and_leaves_unscored_cells_blank(tmp_path):
    import numpy as np

    from ctcforge.lm_tuning import scored_cells

    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "lm_tuning").mkdir()
    (repo / "lm_tuning" / "best.json").write_text(json.dumps(
        {"alpha": 0.5, "beta": 1.5, "beam_width": 100, "wer": 0.4, "cer": 0.1, "dev_clips": 40,
         "grid_cells": 17, "grid_cells_planned": 24, "dataset": "cv", "config": "hy-AM", "split": "dev"}))
    rebuild_card(repo)
    text = (repo / "README.md").read_text(encoding="utf-8")
    assert "stopped at its time limit after 17 of its 24 cells" in text
    wer = np.array([[0.5, np.nan], [0.4, 0.45]])
    assert scored_cells(wer) == [(0, 0, 0.5), (1, 0, 0.4), (1, 1, 0.45)]


# ---------------------------------------------------------------------------- training, truth

ROOT = Path(__file__).resolve().parents[1]
CV_RELEASE = "/data/cv-corpus-17.0-2024-03-15"


def section(text: str, name: str) -> str:
    return text.split(f"<!-- ctcforge:begin {name} -->")[1].split(f"<!-- ctcforge:end {name} -->")[0]


def test_catalogue_repo_card_holds_the_training_command_for_its_base_model(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="facebook/wav2vec2-xls-r-300m")
    training = section((repo / "README.md").read_text(encoding="utf-8"), "training")
    command = training.split("```bash\n")[1].split("```")[0]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["python", "run_speech_recognition_ctc.py"]
    pairs = dict(zip(argv[2::1], argv[3::1]))
    assert pairs["--model_name_or_path"] == "./" and pairs["--output_dir"] == "./"
    assert pairs["--dataset_name"] == "PATH/TO/cv-corpus-X/" and pairs["--dataset_config_name"] == "hy-AM"
    assert pairs["--eval_split_name"] == "dev" and pairs["--learning_rate"] == "0.0003"
    assert {"--fp16", "--gradient_checkpointing", "--group_by_length", "--do_train", "--do_eval"} <= set(argv)
    # One option a line, so a reader can edit it.
    assert all(line.strip().startswith(("python", "--")) for line in command.strip().splitlines())
    assert "`base_model.json` records: [facebook/wav2vec2-xls-r-300m]" in training
    assert "feature encoder stays frozen" in training and "--bf16" in training
    assert "ctcforge lm ./ --dataset PATH/TO/cv-corpus-X/" in training
    assert "python eval.py --model_id ./" in training
    # Every option is one the repo's own training script knows.
    with imported_script(repo) as script:
        parser = HfArgumentParser((script.ModelArguments, script.DataTrainingArguments,
                                   script.SpeechTrainingArguments))
        _, unknown = argparse.ArgumentParser.parse_known_args(parser, argv[2:])
    assert unknown == []


def test_tiny_card_says_random_weights_and_its_catalogue_settings():
    text = render_card(facts(base_model="tiny", base=resolve_base_model("tiny")))
    training = section(text, "training")
    assert "random weights, trained from scratch" in training and "--learning_rate 0.002" in training
    assert "stays frozen" not in training and "--fp16 \\" not in training


def test_stamped_dataset_goes_into_the_commands_and_datasets():
    answers = Answers(language="hy-AM", base_model="facebook/wav2vec2-xls-r-300m", model_name="m",
                      dataset=CV_RELEASE, dataset_config="hy-AM")
    stamped = facts_from_answers(answers, HY)
    card = ModelCard(render_card(stamped))
    # A local folder is no Hub dataset: named in the prose, never in `datasets:`.
    assert card.data.datasets is None
    assert "Training data: Common Voice 17.0 (hy-AM), from the Mozilla Data Collective: " in card.text
    # Commands name the release where `ctcforge data` unpacks it, never this machine's folder.
    assert "--dataset_name data/cv-corpus-17.0-2024-03-15 \\" in card.text
    assert "python eval.py --model_id ./ --dataset data/cv-corpus-17.0-2024-03-15 --config hy-AM" in section(
        card.text, "usage")
    assert "ctcforge data common-voice hy-AM --version 17.0 --output-dir data" in card.text
    assert CV_RELEASE not in card.text and "PATH/TO" not in card.text


@pytest.mark.parametrize("base, spec, licence, corrected", [
    ("facebook/mms-300m", None, "cc-by-nc-4.0", False),
    ("facebook/w2v-bert-2.0", None, "mit", False),
    # The hy-AM spec says apache-2.0: over MMS weights that is corrected, over MIT ones it stands.
    ("facebook/mms-1b", "hy-AM", "cc-by-nc-4.0", True),
    ("facebook/w2v-bert-2.0", "hy-AM", "apache-2.0", False),
])
def test_licence_follows_the_base_model(tmp_path, base, spec, licence, corrected):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model=base,
                    spec_path=ROOT / "specs" / f"{spec}.yaml" if spec else None)
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    assert card.data.license == licence
    note = f"licence, apache-2.0, is replaced by cc-by-nc-4.0: the base model {base}"
    assert (note in card.text) == corrected


@pytest.mark.parametrize("code, iso", [("hy-AM", "hy"), ("zh-HK", "yue"), ("ja", "ja")])
def test_language_is_iso_639_and_the_locale_is_bcp47(tmp_path, code, iso):
    repo = new_repo(code, tmp_path / "repo", base_model="tiny")  # write_card checks the YAML trip
    data = ModelCard((repo / "README.md").read_text(encoding="utf-8")).data
    assert data.language == [iso] and data.language_bcp47 == [code]


def test_check_card_notices_a_lost_language_bcp47():
    text = render_card(facts())
    assert "language_bcp47:\n- hy-AM\n" in text
    with pytest.raises(CtcforgeError, match="language_bcp47"):
        check_card(text.replace("language_bcp47:\n- hy-AM\n", ""), facts())


def training_run(output_dir, command="python run_speech_recognition_ctc.py --model_name_or_path ./ "
                 f"--dataset_name {CV_RELEASE} --dataset_config_name hy-AM --output_dir ./ "
                 "--learning_rate 0.123 --do_train"):
    return {"command": command, "output_dir": str(output_dir), "started_from": "facebook/wav2vec2-xls-r-300m",
            "steps": 1234, "finished_at": "2026-12-02T10:00:00+00:00",
            "framework_versions": {"Transformers": "9.9.9", "Pytorch": "8.8.8", "Datasets": "7.7.7",
                                   "Tokenizers": "6.6.6"}}


def test_training_run_shows_the_command_really_run_and_its_versions(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="facebook/wav2vec2-xls-r-300m")
    before = (repo / "README.md").read_text(encoding="utf-8")
    assert "Not trained yet" in section(before, "framework")
    (repo / "model.safetensors").write_bytes(b"weights")
    (repo / "training_run.json").write_text(json.dumps(training_run(repo)))
    rebuild_card(repo)
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    training = section(card.text, "training")
    assert "--learning_rate 0.123 \\" in training and "--learning_rate 0.0003" not in training
    assert "1234 steps from facebook/wav2vec2-xls-r-300m" in training and "Not trained yet" not in training
    assert section(card.text, "framework").split("\n\n", 1)[1].split("\n")[:4] == [
        "- Transformers 9.9.9", "- Pytorch 8.8.8", "- Datasets 7.7.7", "- Tokenizers 6.6.6"]
    assert card.data.datasets is None and "Training data: Common Voice 17.0 (hy-AM)" in card.text
    assert "ctcforge lm ./ --dataset data/cv-corpus-17.0-2024-03-15 --config hy-AM" in training  # trained on
    assert "--dataset_name data/cv-corpus-17.0-2024-03-15 --dataset_config_name" in training.replace(" \\\n   ", "")
    assert CV_RELEASE not in card.text
    assert "weights are in" not in training


def test_weights_in_another_output_dir_are_found_and_named(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="facebook/wav2vec2-xls-r-300m")
    out = tmp_path / "out"
    out.mkdir()
    (repo / "training_run.json").write_text(json.dumps(training_run(out)))
    # Without weights in either folder the run trained nothing the card can show.
    rebuild_card(repo)
    assert "Not trained yet" in section((repo / "README.md").read_text(encoding="utf-8"), "training")
    (out / "model.safetensors").write_bytes(b"weights")
    history = [{"loss": 3.0, "step": 10}, {"eval_loss": 2.5, "eval_wer": 0.9, "eval_cer": 0.4, "epoch": 1.0,
                                           "step": 20}]
    (out / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (out / "training_hyperparameters.json").write_text(json.dumps({"learning_rate": 0.123}))
    rebuild_card(repo)
    training = section((repo / "README.md").read_text(encoding="utf-8"), "training")
    # Named without this machine's folders: the card may be published.
    assert "The trained weights are in `PATH/TO/out`" in training and str(out) not in training
    assert "- learning_rate: 0.123" in training and "| 3.0000 | 1.00 | 20 | 2.5000 | 0.9000 | 0.4000 |" in training
    assert (repo / "training_curve.png").is_file() and "![Training curve](training_curve.png)" in training


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not JSON"),
    (json.dumps({**training_run("/x"), "steps": "many"}), "'steps' should be a int"),
    (json.dumps({**training_run("/x"), "command": "python 'unclosed"}), "not a shell command line"),
])
def test_unreadable_training_run_is_one_line_naming_the_file(tmp_path, content, problem):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    (repo / "training_run.json").write_text(content)
    with pytest.raises(CtcforgeError, match=re.escape(problem)) as error:
        rebuild_card(repo)
    assert str(repo / "training_run.json") in str(error.value) and "\n" not in str(error.value)


def test_spec_figures_in_the_description_give_way_to_measured_results(tmp_path):
    repo = new_repo(None, tmp_path / "repo", spec_path=ROOT / "specs" / "hy-AM.yaml")
    assert "- Wer: **0.5141**" in section((repo / "README.md").read_text(encoding="utf-8"), "description")
    folder = repo / "eval" / "greedy"
    folder.mkdir(parents=True)
    (folder / "cv_hy-AM_test_eval_results.txt").write_text("WER: 0.4\nCER: 0.1")
    rebuild_card(repo)
    text = (repo / "README.md").read_text(encoding="utf-8")
    description = section(text, "description")
    for stale in ("0.5141", "0.2756", "0.4521", "Wer+LM", "achieves the following results"):
        assert stale not in description
    assert "fine-tuned version of [facebook/wav2vec2-xls-r-1b]" in description
    assert "this repo's own measurements are in the evaluation results below" in description
    assert "| w/o LM | WER | 0.4000 |" in section(text, "evaluation")


@pytest.mark.parametrize("value, refused", [(54.05, True), (1.6, True), (1.2, False), (0.25, False)])
def test_spec_refuses_a_metric_that_looks_like_a_percentage(value, refused):
    data = {"language": "hy-AM", "model_name": "m", "base_model": "tiny", "results": [result(value=value)]}
    if refused:
        with pytest.raises(CtcforgeError, match=r"results\[0\]\.metrics\[0\]\.value.*percentage.*corrections"):
            spec_from_dict(data, source="my.yaml")
    else:
        spec_from_dict(data, source="my.yaml")  # WER above 1 exists: more insertions than words
    data = {**data, "results": [], "evaluation": [{"dataset": "d", "with_lm": {"cer": value}}]}
    if refused:
        with pytest.raises(CtcforgeError, match=r"evaluation\[0\]\.with_lm\.cer.*percentage"):
            spec_from_dict(data, source="my.yaml")


def test_card_says_what_the_repo_needs_without_ctcforge():
    standalone = section(render_card(facts()), "standalone")
    assert "apt-get install ffmpeg" in standalone and "kenlm==0.3.0" in standalone
    assert "lmplz -o 5 -S 10% --discount_fallback < text.txt > 5gram.arpa" in standalone
    assert "build_binary 5gram.arpa language_model/lm.binary" in standalone
    for name in ("lm.binary", "unigrams.txt", "attrs.json", "alphabet.json"):
        assert f"`{name}`" in standalone


@pytest.mark.parametrize("base_card, licence", [
    (None, "other"),  # nothing says: never a guess
    ("---\nlicense: mit\n---\n# A base\n", "mit"),  # the base's own card says
    ("# A base with no front matter\n", "other"),
])
def test_a_local_base_gives_its_own_licence_or_other(tmp_path, base_card, licence):
    from conftest import XLSR_STYLE, save_waveform_extractor
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    base = tmp_path / "base"
    Wav2Vec2ForPreTraining(Wav2Vec2Config(**XLSR_STYLE)).save_pretrained(base)
    save_waveform_extractor(base)
    if base_card is not None:
        (base / "README.md").write_text(base_card, encoding="utf-8")
    repo = new_repo("hy-AM", tmp_path / "repo", base_model=str(base))
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    assert card.data.license == licence
    assert ("The licence of the base model's weights is not known" in card.text) == (licence == "other")


def write_eval_run(folder, wer, evaluated, split_rows, decoder="greedy"):
    """An eval.py run's results and summary in `folder`, as eval.py writes them."""
    from ctcforge.runtime.repo_files import is_complete_evaluation

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cv_hy-AM_test_eval_results.txt").write_text(f"WER: {wer}\nCER: 0.1")
    (folder / "cv_hy-AM_test_eval_summary.json").write_text(json.dumps(
        {"dataset_name": "cv", "config": "hy-AM", "split": "test", "decoder": decoder, "wer": wer, "cer": 0.1,
         "evaluated": evaluated, "split_rows": split_rows,
         "complete": is_complete_evaluation(evaluated, split_rows)}))


@pytest.mark.parametrize("evaluated, split_rows, published", [
    (160, 160, True),   # the whole split
    (153, 160, True),   # 7 rows skipped: under 5%
    (10, 160, False),   # --max_samples 10
    (140, 160, False),  # 20 rows skipped
])
def test_only_a_complete_evaluation_reaches_the_model_index(tmp_path, evaluated, split_rows, published):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    write_eval_run(repo, 0.42, evaluated, split_rows)
    rebuild_card(repo)
    card = ModelCard((repo / "README.md").read_text(encoding="utf-8"))
    assert bool(card.data.eval_results) == published
    prose = f"WER 0.4200, CER 0.1000 on {evaluated} of the split's {split_rows} rows"
    assert (prose in card.text) == (not published)


def test_two_complete_evaluations_that_disagree_are_refused_naming_both(tmp_path):
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="tiny")
    write_eval_run(repo, 0.42, 160, 160)
    write_eval_run(repo / "eval" / "greedy", 0.52, 160, 160)
    with pytest.raises(CtcforgeError, match=r"two evaluations of cv hy-AM \(test\) greedy disagree: .*"
                                            r"cv_hy-AM_test_eval_results.txt and .*eval/greedy/"):
        rebuild_card(repo)


@pytest.mark.parametrize("dataset, datasets, said", [
    ("mozilla-foundation/common_voice_8_0", ["mozilla-foundation/common_voice_8_0"],
     "the Hub dataset [mozilla-foundation/common_voice_8_0]"),
    ("/data/cv-corpus-25.0-2026-03-09", None, "Common Voice 25.0 (hy-AM), from the Mozilla Data Collective"),
    ("/data/my-recordings", None, "the local dataset `my-recordings` (hy-AM), which is not on the Hub"),
])
def test_only_hub_ids_go_under_datasets_and_the_prose_names_the_rest(dataset, datasets, said):
    answers = Answers(language="hy-AM", base_model="tiny", model_name="m", dataset=dataset, dataset_config="hy-AM")
    card = ModelCard(render_card(facts_from_answers(answers, HY)))
    assert card.data.datasets == datasets
    assert f"Training data: {said}" in card.text


def test_no_path_of_this_machine_reaches_a_card(tmp_path):
    """A trained repo whose run, base and data all lie in this machine's folders."""
    from ctcforge.card import ABSOLUTE_PATH

    private = tmp_path / "recordings"  # a private folder, not on the Hub
    repo = new_repo("hy-AM", tmp_path / "repo", base_model="facebook/wav2vec2-xls-r-300m")
    out = tmp_path / "elsewhere" / "out"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"weights")
    run = training_run(out, command=f"python run_speech_recognition_ctc.py --model_name_or_path ./ --dataset_name "
                                    f"{private} --output_dir {out} --do_train")
    (repo / "training_run.json").write_text(json.dumps(run))
    rebuild_card(repo)
    text = (repo / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in text and not ABSOLUTE_PATH.search(text)
    assert "--dataset_name PATH/TO/recordings" in text and "--output_dir PATH/TO/out" in text
    assert "the local dataset `recordings`" in text
