"""The card: YAML from huggingface_hub's data model, rebuilt from repo artefacts, person's text kept."""

import json
from dataclasses import replace

import pytest
from huggingface_hub import ModelCard

from ctcforge.card import CardFacts, rebuild_card, render_card, write_card
from ctcforge.errors import CtcforgeError
from ctcforge.profiles import load_profile
from ctcforge.render import new_repo
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
