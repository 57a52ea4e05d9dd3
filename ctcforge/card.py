"""The model card (`README.md`) of a language repo.

The YAML front matter comes out of huggingface_hub's data model (`ModelCardData`,
`EvalResult`), never out of typed YAML. The body is a list of generated sections, each
fenced by `<!-- ctcforge:begin NAME -->` / `<!-- ctcforge:end NAME -->` markers, so a
rebuild replaces only those and keeps every line a person wrote outside them.

The repo's files (answers, training_run.json, trainer state, eval.py results) are read by
`results` and `runtime.repo_files` into `CardFacts` first; each section is then rendered from its template in
`templates/card/NAME.md.jinja`, which turns those facts into markdown. Until the repo is
trained, the training section suggests the command for its base model; after, it shows the
command training_run.json records, and the framework versions are that run's (never those
of the environment running `ctcforge card`).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ctcforge import plots
from ctcforge.answers import ANSWERS_FILE, Answers, answers_profile
from ctcforge.catalogue import BaseModel, looks_like_path, resolve_base_model
from ctcforge.languages import Profile
from ctcforge.lm_text import synthetic_release
from ctcforge.results import EvalFigures, read_eval_results, read_lm_tuning, read_log_history, read_onnx_export
from ctcforge.runtime.atomic import write_text_atomically
from ctcforge.runtime.beam_search import has_language_model
from ctcforge.runtime.error_rates import SPACELESS_SPLITS
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import (CONFIG_FILE, TRAINING_RUN_FILE, TRAINING_SCRIPT, TrainingRun, read_hyperparameters,
                                         read_training_run, trained_weights_folder)
from ctcforge.spec import Spec, check_metric_value, spec_from_dict

TASK_TYPE = "automatic-speech-recognition"
SECTION = re.compile(r"<!-- ctcforge:begin (?P<name>[\w-]+) -->\n.*?<!-- ctcforge:end (?P=name) -->\n?",
                     re.DOTALL)
METRIC_LABEL = {"wer": "WER", "cer": "CER"}
# Where a command needs the dataset and the repo was stamped without one: a Common Voice
# release folder, as speech_data.py loads it.
DATASET_PLACEHOLDER = "PATH/TO/cv-corpus-X/"
# Checkpointing for the suggested command, after the catalogue's settings (which may set
# these too): evaluate and save every 500 steps, keeping the 3 newest checkpoints, so an
# interrupted run resumes without filling the disk with 300M-parameter checkpoints.
CHECKPOINTING = {"eval_strategy": "steps", "eval_steps": 500, "save_steps": 500, "save_total_limit": 3}
# Licences whose weights a fine-tune may be released under another licence: they ask for
# attribution at most. Any other licence of a base model (non-commercial, share-alike, or
# one this list does not know) passes on to the model fine-tuned from it.
PERMISSIVE_LICENCES = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc-by-4.0", "cc0-1.0"}
# "- Wer: 0.5141", "- Wer+LM: **0.2756**": a figure a spec's description quotes.
QUOTED_FIGURE = re.compile(r"^\s*[-*]\s*\**\s*(loss|wer|cer)(\s*\+\s*lm)?\s*\**\s*:\s*\**\s*[-+]?[\d.]+(e[-+]?\d+)?"
                           r"\s*\**\s*$", re.IGNORECASE)
QUOTED_FIGURES_INTRO = re.compile(r"achieves the following results", re.IGNORECASE)


@dataclass(frozen=True)
class CardFacts(Spec):
    """Everything a card says: a spec's facts (from the answers record or measured in the
    repo) plus the language profile they are about."""

    profile: Profile | None = None
    # The base model the repo was stamped for (None when a local base folder is gone), and
    # the dataset it was stamped for: the suggested training command is built from them.
    base: BaseModel | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    # The finished run whose weights the card describes, and the folder holding them when
    # that is its --output_dir rather than the repo.
    training_run: TrainingRun | None = None
    weights_folder: str | None = None
    # Files the card shows, relative to the repo: the training curve PNG, and what
    # `ctcforge lm --tune-*` measured (lm_tuning/best.json) with its heatmap.
    training_curve: str | None = None
    lm_tuning: dict | None = None
    # onnx/export.json, when `ctcforge export` has written the ONNX model.
    onnx_export: dict | None = None
    # Whether language_model/ holds an LM (pipeline() then decodes with it), and the
    # language adapter pipeline() must be told to load (MMS adapter repos).
    language_model: bool = False
    adapter_language: str | None = None
    # eval.py runs that did not measure a whole split (--max_samples, many rows skipped):
    # named in the card's prose, never in its model-index.
    partial_evaluations: tuple = ()
    # What the model was trained on, in words (`training_data`).
    training_data: str | None = None

    @classmethod
    def from_spec(cls, spec: Spec, profile: Profile) -> "CardFacts":
        return cls(**vars(spec), profile=profile)


# ---------------------------------------------------------------------------- front matter

def card_data(facts: CardFacts) -> ModelCardData:
    tags = facts.tags or [TASK_TYPE, facts.profile.code, "robust-speech-event", "ctcforge"]
    # The Hub filters on ISO 639 codes; the Common Voice locale is kept in language_bcp47.
    return ModelCardData(
        language=[facts.profile.iso_language], language_bcp47=[facts.profile.code],
        license=facts.license, tags=list(tags),
        datasets=list(facts.datasets) or None, base_model=_hub_base_model(facts.base_model),
        model_name=facts.model_name, eval_results=eval_results(facts) or None,
        pipeline_tag=TASK_TYPE,
    )


def _hub_base_model(base_model: str) -> str | None:
    """Only Hub ids belong in `base_model:`; `tiny` and local folders are not models there."""
    return base_model if re.fullmatch(r"[\w.-]+/[\w.-]+", base_model) else None


def eval_results(facts: CardFacts) -> list[EvalResult]:
    found = []
    for result in facts.results:
        task, dataset = result["task"], result["dataset"]
        for metric in result["metrics"]:
            value = metric["value"]
            # Results measured in the repo never passed spec validation; check them the same way.
            check_metric_value(value, f"{metric.get('name', metric['type'])} of {dataset['name']}",
                               lambda where, problem: CtcforgeError(f"card metric {where!r}: {problem}"))
            found.append(EvalResult(
                task_type=task["type"], task_name=task.get("name"),
                dataset_type=dataset["type"], dataset_name=dataset["name"],
                dataset_args=dataset.get("args"), dataset_config=dataset.get("config"),
                dataset_split=dataset.get("split"),
                metric_type=metric["type"], metric_name=metric.get("name"), metric_value=value))
    return found


# ---------------------------------------------------------------------------- body sections

# The body's sections, in card order; each is rendered from templates/card/NAME.md.jinja.
SECTION_ORDER = ("description", "usage", "evaluation", "corrections", "language-model", "training", "framework",
                 "standalone")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(str(resources.files("ctcforge"))) / "templates" / "card")),
    # As `ctcforge new` renders the repo: a fact the template names but the context lacks is an
    # error, never an empty string in a published card.
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)
_TEMPLATES.filters.update(cell=lambda text: str(text).replace("|", "\\|"),
                          fraction=lambda value: _fraction(value),
                          metric_label=METRIC_LABEL.__getitem__)


def body_sections(facts: CardFacts) -> dict[str, str]:
    """name -> markdown, in card order; an empty section is left out."""
    context = _section_context(facts)
    sections = {}
    for name in SECTION_ORDER:
        try:
            text = _TEMPLATES.get_template(f"{name}.md.jinja").render(context).strip("\n")
        except jinja2.UndefinedError as exc:
            raise CtcforgeError(f"card template {name}.md.jinja: {exc}") from exc
        if text:
            sections[name] = portable(text, facts)
    return sections


def _section_context(facts: CardFacts) -> dict:
    """What the section templates are given: the facts, and the commands and tables made of them."""
    run = facts.training_run
    training_argv = suggested_training_argv(facts) if run is None else shlex.split(run.command)
    return {"facts": facts, "profile": facts.profile, "hub_base_model": bool(_hub_base_model(facts.base_model)),
            "spaceless": facts.profile.word_split in SPACELESS_SPLITS,
            "eval_command": eval_command(facts), "lm_command": lm_command(facts),
            "training_command": shell_lines(training_argv), "dataset_placeholder": DATASET_PLACEHOLDER,
            "training_run_file": TRAINING_RUN_FILE, "evaluation_rows": _evaluation_rows(facts),
            "training_rows": _training_rows(facts), "tuned_on": _tuned_on(facts.lm_tuning or {})}


def _dataset_and_config(facts: CardFacts) -> tuple[str, str]:
    return dataset_reference(facts.dataset, facts.dataset_config), facts.dataset_config or facts.profile.code


def dataset_reference(dataset: str | None, config: str | None) -> str:
    """The dataset as a card's commands name it, free of the machine the card was made on:
    a Hub id as it is; a Common Voice or synthetic release as `data/NAME`, where the
    command `training_data` gives unpacks or writes it; any other local folder as
    `PATH/TO/NAME`, a private folder the card does not publish."""
    if not dataset:
        return DATASET_PLACEHOLDER
    if not is_local_dataset(dataset):
        return dataset
    name = dataset_label(dataset)
    if CV_RELEASE_FOLDER.match(name) or synthetic_release(dataset, config):
        return f"data/{name}"
    return f"PATH/TO/{name}"


# An absolute path with at least two parts, not inside a URL or a relative path.
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])~?/(?:[\w.+-]+/)+[\w.+-]*")


def portable(text: str, facts: "CardFacts") -> str:
    """A generated section without this machine's folders: the dataset as
    `dataset_reference` names it, any other absolute path as PATH/TO/ and its last part."""
    if facts.dataset and is_local_dataset(facts.dataset):
        recorded = facts.dataset.rstrip("/")
        reference = dataset_reference(facts.dataset, facts.dataset_config)
        text = re.sub(re.escape(recorded) + r"/?", lambda match: reference, text)
    return ABSOLUTE_PATH.sub(lambda match: f"PATH/TO/{Path(match.group(0).rstrip('/')).name}", text)


def eval_command(facts: CardFacts) -> str:
    dataset, config = _dataset_and_config(facts)
    return facts.eval_command or shlex.join(["python", "eval.py", "--model_id", "./", "--dataset", dataset,
                                             "--config", config, "--split", "test", "--log_outputs"])


def lm_command(facts: CardFacts) -> str:
    dataset, config = _dataset_and_config(facts)
    return shlex.join(["ctcforge", "lm", "./", "--dataset", dataset, "--config", config,
                       "--tune-dataset", dataset, "--tune-config", config])


def suggested_training_argv(facts: CardFacts) -> list[str]:
    """This repo's training command: itself as the model, the dataset it was stamped for,
    the catalogue's settings for its base model, then checkpointing."""
    dataset, config = _dataset_and_config(facts)
    arguments = {"model_name_or_path": "./", "dataset_name": dataset, "dataset_config_name": config,
                 "train_split_name": "train", "eval_split_name": "dev", "output_dir": "./"}
    for name, value in (facts.base.training if facts.base else {}).items():
        arguments.setdefault(name, value)
    for name, value in CHECKPOINTING.items():
        arguments.setdefault(name, value)
    arguments.update(do_train=True, do_eval=True)
    argv = ["python", TRAINING_SCRIPT]
    for name, value in arguments.items():
        if value is True:  # the catalogue's `true`: a bare flag
            argv.append(f"--{name}")
        else:
            argv += [f"--{name}", f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


def shell_lines(argv: list[str]) -> str:
    """A command one option (with its values) a line, continued with backslashes."""
    lines: list[list[str]] = [[]]
    for token in argv:
        if token.startswith("--") and lines[-1]:
            lines.append([])
        lines[-1].append(shlex.quote(token))
    return " \\\n    ".join(" ".join(line) for line in lines)


def _evaluation_rows(facts: CardFacts) -> list[list[str]]:
    """The evaluation table's rows below its header: per decoder, one row a metric that some
    dataset has, the decoder named on its first row only."""
    rows = facts.evaluation
    metrics = [m for m in facts.profile.metrics
               if any(m in row.get(side, {}) for row in rows for side in ("without_lm", "with_lm"))]
    table = []
    for side, title in (("without_lm", "w/o LM"), ("with_lm", "w/ LM")):
        if not any(row.get(side) for row in rows):
            continue
        for i, metric in enumerate(metrics):
            value = [row.get(side, {}).get(metric) for row in rows]
            table.append([title if i == 0 else "", METRIC_LABEL[metric]] +
                         [_fraction(v) for v in value])
    return table


def _fraction(value: float | None) -> str:
    """A WER or CER as the card's tables show it: four decimals, blank when not measured."""
    return "" if value is None else f"{value:.4f}"


def _training_rows(facts: CardFacts) -> list[list[str]]:
    """The training-results rows, each padded to the table's width."""
    table = facts.training_results
    if not table.get("rows"):
        return []
    return [list(row) + [""] * (len(table["columns"]) - len(row)) for row in table["rows"]]


def _tuned_on(tuning: dict) -> str:
    """The dev data the LM weights were tuned on, as `cv-corpus-17.0 hy-AM (dev)`."""
    dev = " ".join(str(part) for part in (Path(str(tuning.get("dataset", ""))).name, tuning.get("config"))
                   if part)
    return f"{dev} ({tuning.get('split', 'dev')})" if dev else "the dev split"


# ---------------------------------------------------------------------------- the file

def render_card(facts: CardFacts, existing: str | None = None) -> str:
    """The whole README.md: new front matter; generated sections replaced in place, new ones
    put where the section order says, everything else from `existing` kept."""
    data = card_data(facts)
    sections = body_sections(facts)
    body = ModelCard(existing).text if existing else ""
    in_body = []

    def refresh(match: re.Match) -> str:
        name = match["name"]
        if name not in sections:
            return ""
        in_body.append(name)
        return _fenced(name, sections[name])

    body = SECTION.sub(refresh, body)
    order = list(sections)
    for position, name in enumerate(order):
        if name in in_body:
            continue
        block = _fenced(name, sections[name])
        following = [later for later in order[position + 1:] if later in in_body]
        if following:
            marker = f"<!-- ctcforge:begin {following[0]} -->"
            body = body.replace(marker, f"{block}\n{marker}", 1)
        else:
            body = f"{body.rstrip(chr(10))}\n\n{block}" if body.strip() else block
        in_body.append(name)
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip(chr(10))}"


def _fenced(name: str, text: str) -> str:
    return f"<!-- ctcforge:begin {name} -->\n{text}\n<!-- ctcforge:end {name} -->\n"


def write_card(facts: CardFacts, repo: Path) -> Path:
    path = repo / "README.md"
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    text = render_card(facts, existing)
    check_card(text, facts)
    return write_text_atomically(path, text)


def check_card(text: str, facts: CardFacts) -> None:
    """Parses the card back with huggingface_hub: every value must survive the YAML trip."""
    parsed = ModelCard(text).data
    expected = card_data(facts)
    # language_bcp47 is an extra field, an attribute only when the YAML holds it.
    for key in ("language", "language_bcp47", "license", "tags", "datasets", "model_name"):
        wrote, read = getattr(expected, key, None), getattr(parsed, key, None)
        if read != wrote:
            raise CtcforgeError(f"card field {key!r} does not survive YAML: wrote {wrote!r}, read back {read!r}")
    if (parsed.eval_results or []) != (expected.eval_results or []):
        raise CtcforgeError("card model-index does not survive YAML; check dataset and metric names")


# ---------------------------------------------------------------------------- facts from the repo's records

def evaluation_from_runs(runs: list[EvalFigures], profile: Profile, lm_present: bool) -> tuple[list, list, list]:
    """Body table rows and model-index results from eval.py's complete runs, and the partial
    runs as prose lines. Two complete runs of one dataset, split and decoder that disagree
    are refused: the card could publish only one of them."""
    rows: dict[str, dict] = {}
    results, partial, seen = [], [], {}
    for run in runs:
        side = run.decoder if run.decoder != "unknown" else ("with_lm" if lm_present else "without_lm")
        decoder = "with the LM" if side == "with_lm" else "greedy"
        if not run.complete:
            figures = ", ".join(f"{METRIC_LABEL[m]} {run.metrics[m]:.4f}" for m in profile.metrics if m in run.metrics)
            partial.append(f"{run.label}, {decoder}: {figures} on {run.evaluated} of the split's {run.split_rows} "
                           f"rows (`{run.path.name}`)")
            continue
        earlier = seen.setdefault((run.label, side), run)
        if earlier is not run and earlier.metrics != run.metrics:
            raise CtcforgeError(f"two evaluations of {run.label} {decoder} disagree: {earlier.path} and {run.path}; "
                                "delete the one that is not of this model")
        rows.setdefault(run.label, {"dataset": run.label})[side] = {
            m: v for m, v in run.metrics.items() if m in profile.metrics}
        suffix = " (with LM)" if side == "with_lm" else ""
        metrics = [{"type": m, "name": f"Test {METRIC_LABEL[m]}{suffix}", "value": run.metrics[m]}
                   for m in profile.metrics if m in run.metrics]
        if metrics:
            results.append({"task": {"type": TASK_TYPE, "name": "Automatic Speech Recognition"},
                            "dataset": {"type": run.dataset, "name": run.label, "args": run.config,
                                        "split": run.split},
                            "metrics": metrics})
    return list(rows.values()), results, partial


def training_from_state(folder: Path, profile: Profile) -> tuple[dict, dict]:
    """Hyperparameters and the training-results table from the trainer_state.json (and the
    hyperparameters the training script records) in `folder`."""
    hyperparameters = read_hyperparameters(folder)
    history = read_log_history(folder)
    metric_keys = [m for m in profile.metrics]
    columns = ["Training Loss", "Epoch", "Step", "Validation Loss"] + [m.capitalize() for m in metric_keys]
    rows, last_train_loss = [], None
    for entry in history:
        if "loss" in entry:
            last_train_loss = entry["loss"]
        if "eval_loss" in entry:
            row = [_num(last_train_loss), _num(entry.get("epoch"), 2), str(entry.get("step", "")),
                   _num(entry["eval_loss"])] + [_num(entry.get(f"eval_{m}")) for m in metric_keys]
            rows.append(row)
    return hyperparameters, ({"columns": columns, "rows": rows} if rows else {})


def dataset_label(dataset: str) -> str:
    """A dataset argument's name in the card: a Hub id as it is, a local folder by its own
    name (a Common Voice release folder's, cv-corpus-17.0-2024-03-15, names the release;
    its absolute path would name only the machine it was on)."""
    if is_local_dataset(dataset):
        return Path(dataset.rstrip("/\\")).name or dataset
    return dataset


def is_local_dataset(dataset: str) -> bool:
    return looks_like_path(dataset) or Path(dataset).is_absolute() or Path(dataset).expanduser().exists()


def hub_datasets(dataset: str | None) -> list[str]:
    """`datasets:` of the front matter, which the Hub checks: Hub ids only. A local folder is
    named in the card's prose instead (`training_data`)."""
    return [dataset] if dataset and not is_local_dataset(dataset) else []


CV_RELEASE_FOLDER = re.compile(r"cv-corpus-(\d+\.\d+)")


def training_data(dataset: str | None, config: str | None) -> str | None:
    """What the model was trained on, in words: synthetic speech said as such, a Common
    Voice release by its version, any other local folder as local."""
    if not dataset:
        return None
    reference = dataset_reference(dataset, config)
    made = synthetic_release(dataset, config)
    if made:
        return (f"synthetic {config or ''} speech spoken by espeak-ng (`ctcforge synth`): far easier than people "
                "reading, so its figures show that the stages work, not how the model does on real speech. "
                f"`ctcforge synth {made.get('locale', config)} --output-dir {reference} --num-clips "
                f"{made.get('num_clips', 'N')} --seed {made.get('seed', 0)}` writes it again")
    name = dataset_label(dataset)
    if not is_local_dataset(dataset):
        return f"the Hub dataset [{name}](https://huggingface.co/datasets/{name})" + (f" ({config})" if config else "")
    release = CV_RELEASE_FOLDER.match(name)
    if release:
        return (f"Common Voice {release.group(1)}" + (f" ({config})" if config else "")
                + f", from the Mozilla Data Collective: `ctcforge data common-voice {config or 'LOCALE'} --version "
                f"{release.group(1)} --output-dir data` unpacks it as `{reference}`, the folder the commands "
                "below name")
    return (f"the local dataset `{name}`" + (f" ({config})" if config else "")
            + f", which is not on the Hub; `{reference}` stands for it in the commands below")


def without_quoted_figures(description: str, reason: str) -> str:
    """A spec's description without the figures it quotes ("- Wer: 0.5141") and the line
    that introduces them, which is replaced by `reason`: the card's own results replace them."""
    lines, replaced = [], False
    for line in description.splitlines():
        if QUOTED_FIGURE.match(line):
            continue
        if QUOTED_FIGURES_INTRO.search(line):
            line, replaced = reason, True
        lines.append(line)
    if not replaced and len(lines) != len(description.splitlines()):
        lines.append(reason)
    return "\n".join(lines) + "\n"


def _num(value: float | None, digits: int = 4) -> str:
    return "No log" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------- the verb

def facts_from_answers(answers: Answers, profile: Profile) -> CardFacts:
    stamped = {"base_model": answers.base_model, "base": _base_model(answers.base_model),
               "dataset": answers.dataset, "dataset_config": answers.dataset_config}
    if answers.spec:
        spec = spec_from_dict(answers.spec, source=ANSWERS_FILE)
        # `new --spec X --base-model M` stamps M's architecture; the card must say M.
        return with_base_licence(replace(CardFacts.from_spec(spec, profile), **stamped), from_spec=True)
    facts = CardFacts(language=profile.code, model_name=answers.model_name, profile=profile,
                      datasets=hub_datasets(answers.dataset),
                      training_data=training_data(answers.dataset, answers.dataset_config), **stamped)
    return with_base_licence(facts, from_spec=False)


def _base_model(name: str) -> BaseModel | None:
    """The recorded base model; None when it no longer resolves (a local folder since moved),
    which costs the card only the catalogue's suggested settings."""
    try:
        return resolve_base_model(name)
    except CtcforgeError:
        return None


def with_base_licence(facts: CardFacts, from_spec: bool) -> CardFacts:
    """The licence follows the base model's weights. A spec may choose another licence only
    over permissive weights; over a restrictive one (MMS: cc-by-nc-4.0) the base's licence
    wins, and the card says it corrected the spec."""
    licence = facts.base.license if facts.base else None
    if licence is None and facts.base is not None and facts.base.local_path is not None:
        licence = card_licence(facts.base.local_path)
    if not licence:
        # Never a guess: a spec states one; otherwise the card says it is not known.
        return facts if from_spec else replace(facts, license="other")
    if licence == facts.license:
        return facts
    if not from_spec:
        return replace(facts, license=licence)
    if licence in PERMISSIVE_LICENCES:
        return facts
    note = (f"The original card's licence, {facts.license}, is replaced by {licence}: the base model "
            f"{facts.base.id} is released under {licence}, and a model fine-tuned from its weights inherits it.")
    return replace(facts, license=licence, corrections=[*facts.corrections, note])


def card_licence(folder: Path) -> str | None:
    """The `license:` a model folder's own card (README.md) states, or None."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    try:
        licence = ModelCard.load(str(card)).data.license
    except (ValueError, OSError, yaml.YAMLError):
        return None
    return licence if isinstance(licence, str) and licence else None


def rebuild_card(repo: Path) -> Path:
    """`ctcforge card`: the card from the answers record plus what training and eval.py left
    in the repo (or in the output_dir its training run records); measured results replace
    the ones a spec reported, and a retrained model drops the spec's training facts."""
    answers = Answers.load(repo)
    profile = answers_profile(answers)
    facts = facts_from_answers(answers, profile)
    run = read_training_run(repo)
    # A card describes a run: weights with no record of the run that made them are not one.
    trained_in = trained_weights_folder(repo) if run is not None else None
    if trained_in is not None:
        # The data it was really trained on, for `datasets:` and the LM and eval commands.
        dataset = run.argument("dataset_name") or facts.dataset
        facts = replace(facts, training_run=run, weights_folder=None if trained_in == repo else str(trained_in),
                        hyperparameters={}, training_results={}, framework_versions=dict(run.framework_versions),
                        dataset=dataset, dataset_config=run.argument("dataset_config_name") or facts.dataset_config,
                        datasets=hub_datasets(dataset) if dataset else facts.datasets)
        facts = replace(facts, training_data=training_data(facts.dataset, facts.dataset_config) or facts.training_data)
    runs = read_eval_results(repo)
    if runs:
        lm_present = has_language_model(str(repo))
        evaluation, results, partial = evaluation_from_runs(runs, profile, lm_present)
        facts = replace(facts, evaluation=evaluation, results=results, partial_evaluations=tuple(partial))
    elif trained_in is not None:
        # The spec's figures were measured on weights this run replaced.
        facts = replace(facts, evaluation=[], results=[])
    if facts.description and (runs or trained_in is not None):
        reason = ("The original card's figures are not repeated here: this repo's own measurements are in "
                  "the evaluation results below." if runs else
                  "The original card's figures are not repeated here: this model was trained again and has "
                  "not been evaluated since.")
        facts = replace(facts, description=without_quoted_figures(facts.description, reason))
    state_folder = trained_in or repo
    hyperparameters, table = training_from_state(state_folder, profile)
    if hyperparameters:
        facts = replace(facts, hyperparameters=hyperparameters)
    if table:
        facts = replace(facts, training_results=table)
    curve = draw_training_curve(state_folder, repo, profile)
    if curve:
        facts = replace(facts, training_curve=curve)
    tuning = read_lm_tuning(repo)
    if tuning:
        facts = replace(facts, lm_tuning=tuning)
    exported = read_onnx_export(repo)
    if exported:
        facts = replace(facts, onnx_export=exported)
    facts = replace(facts, language_model=has_language_model(str(repo)), adapter_language=adapter_language(repo, profile))
    return write_card(facts, repo)


def adapter_language(repo: Path, profile: Profile) -> str | None:
    """The adapter `pipeline()` loads for this repo's language, when its model has language
    adapters (`adapter_attn_dim` in config.json): the profile's ISO 639-3 code, as eval.py's."""
    try:
        config = json.loads((repo / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return profile.iso639_3 if isinstance(config, dict) and config.get("adapter_attn_dim") else None


TRAINING_CURVE = "training_curve.png"


def draw_training_curve(state_folder: Path, repo: Path, profile: Profile) -> str | None:
    """training_curve.png in the repo, from the trainer_state.json in `state_folder`; its
    path relative to the repo, or None."""
    history = read_log_history(state_folder)
    if not history:
        return None
    drawn = plots.training_curve(history, repo / TRAINING_CURVE, list(profile.metrics))
    return TRAINING_CURVE if drawn else None


