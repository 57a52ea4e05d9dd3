"""Where the trained model of `--model_id` is: eval.py asks here before it loads anything.

This file is copied unchanged into every generated repo, beside eval.py, which imports it.
Training with --output_dir elsewhere (./out) leaves the repo without weights; the run's
`training_run.json`, which run_speech_recognition_ctc.py writes into the repo and its
output_dir, says where they went.
"""

from __future__ import annotations

import json
import os

from .starting_weights import StartingWeightsError, check_model_json, has_weights

# Written by run_speech_recognition_ctc.py at the end of a run, into the repo and its
# --output_dir; its "output_dir" is where the trained weights went.
TRAINING_RUN_FILE = "training_run.json"


class NoTrainedModel(Exception):
    """No usable model where `--model_id` points (no weights, or settings files that do not
    parse); the message says where the model is, or what to do."""


def trained_model_folder(model_id: str, repo_dir: str) -> str:
    """The folder (or Hub id) to load the model from.

    When `model_id` is the repo itself (`--model_id ./`, as the README runs it), the repo's
    own training_run.json says where its model went, and that model is the one the user
    means: it is returned. Any other folder's record is only named, not followed: a copied
    or stale record could point at another run's model, and evaluating it unasked would
    report numbers for the wrong model. Raises NoTrainedModel when a local `model_id`
    holds no weights and is not followed."""
    if not os.path.isdir(model_id):
        if model_id.startswith((".", "/", "~")):  # a path, not a Hub id
            raise NoTrainedModel(f"--model_id {model_id}: no such folder")
        return model_id
    if has_weights(model_id):
        return checked_model_json(model_id)
    output_dir = recorded_output_dir(model_id)
    if output_dir and has_weights(output_dir):
        if os.path.realpath(model_id) == os.path.realpath(repo_dir):
            return checked_model_json(output_dir)
        raise NoTrainedModel(f"the trained model is in {output_dir} ({TRAINING_RUN_FILE}); "
                             f"run eval.py --model_id {output_dir}")
    raise NoTrainedModel(f"no trained weights in {model_id}: train first with "
                         "python run_speech_recognition_ctc.py ... (see README.md, Training)")


def checked_model_json(folder: str) -> str:
    """`folder`, once its config.json and preprocessor_config.json are found to parse."""
    try:
        check_model_json(folder)
    except StartingWeightsError as error:
        raise NoTrainedModel(str(error)) from None
    return folder


def recorded_output_dir(folder: str) -> str | None:
    """The output_dir the folder's training_run.json records, or None without a readable one
    (the caller stops anyway: the folder holds no weights)."""
    try:
        with open(os.path.join(folder, TRAINING_RUN_FILE), encoding="utf-8") as file:
            output_dir = json.load(file).get("output_dir")
    except (OSError, ValueError, AttributeError):
        return None
    # Recorded absolute; a relative one (edited by hand) is read from the folder.
    return os.path.join(folder, output_dir) if isinstance(output_dir, str) and output_dir else None
