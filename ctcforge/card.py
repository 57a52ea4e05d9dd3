"""The model card (`README.md`) of a language repo.

The YAML front matter comes out of huggingface_hub's data model (`ModelCardData`,
`EvalResult`), never out of typed YAML. The body is a list of generated sections, each
fenced by `<!-- ctcforge:begin NAME -->` / `<!-- ctcforge:end NAME -->` markers, so a
rebuild replaces only those and keeps every line a person wrote outside them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ctcforge import plots
from ctcforge.answers import ANSWERS_FILE, Answers
from ctcforge.errors import CtcforgeError
from ctcforge.profiles import Profile, load_profile
from ctcforge.spec import Spec, check_metric_value, spec_from_dict

TASK_TYPE = "automatic-speech-recognition"
RESULTS_SUFFIX = "_eval_results.txt"
SUMMARY_SUFFIX = "_eval_summary.json"
# Where `ctcforge card` looks for eval.py outputs: the repo root (decoder unknown) and
# eval/greedy, eval/lm, the folders ctcforge's own runs write to.
DECODER_FOLDERS = {"greedy": "without_lm", "lm": "with_lm"}
SECTION = re.compile(r"<!-- ctcforge:begin (?P<name>[\w-]+) -->\n.*?<!-- ctcforge:end (?P=name) -->\n?",
                     re.DOTALL)
METRIC_LABEL = {"wer": "WER", "cer": "CER"}


@dataclass
class EvalFigures:
    """One eval.py run: its dataset and decoder, and what it measured."""

    dataset: str  # dataset name as eval.py's dataset_id has it (Hub id or folder name)
    config: str
    split: str
    decoder: str  # "without_lm", "with_lm" or "unknown"
    metrics: dict[str, float]

    @property
    def label(self) -> str:
        return f"{self.dataset} {self.config} ({self.split})"


@dataclass(frozen=True)
class CardFacts(Spec):
    """Everything a card says: a spec's facts (from the answers record or measured in the
    repo) plus the language profile they are about."""

    profile: Profile | None = None
    # Files the card shows, relative to the repo: the training curve PNG, and what
    # `ctcforge lm --tune-*` measured (lm_tuning/best.json) with its heatmap.
    training_curve: str | None = None
    lm_tuning: dict | None = None

    @classmethod
    def from_spec(cls, spec: Spec, profile: Profile) -> "CardFacts":
        return cls(**vars(spec), profile=profile)


# ---------------------------------------------------------------------------- front matter

def card_data(facts: CardFacts) -> ModelCardData:
    tags = facts.tags or [TASK_TYPE, facts.profile.code, "robust-speech-event", "ctcforge"]
    return ModelCardData(
        language=[facts.profile.code], license=facts.license, tags=list(tags),
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

def body_sections(facts: CardFacts) -> dict[str, str]:
    """name -> markdown, in card order; an empty section is left out."""
    sections = {
        "description": _description(facts),
        "usage": _usage(facts),
        "evaluation": _evaluation_table(facts),
        "corrections": _corrections(facts),
        "language-model": _language_model(facts),
        "training": _training(facts),
        "framework": _framework(facts),
    }
    return {name: text for name, text in sections.items() if text}


def _description(facts: CardFacts) -> str:
    profile = facts.profile
    lines = [f"# {facts.title or facts.model_name}", ""]
    if facts.description:
        lines.append(facts.description.rstrip())
    else:
        base = (f"[{facts.base_model}](https://huggingface.co/{facts.base_model})"
                if _hub_base_model(facts.base_model) else f"`{facts.base_model}`")
        origin = ("trained from scratch on ctcforge's `tiny` architecture (randomly initialised, "
                  "about 2 M parameters)" if facts.base_model == "tiny" else f"fine-tuned from {base}")
        lines.append(f"A CTC speech recogniser for {profile.name} (`{profile.code}`), {origin}.")
    lines += ["", _metric_note(profile)]
    return "\n".join(lines)


def _metric_note(profile: Profile) -> str:
    split = {"space": "words split at spaces",
             "fugashi": "words split by fugashi (unidic-lite), since Japanese is written without spaces",
             "char": "one token per character, since the text has no spaces between words"}[profile.word_split]
    headline = METRIC_LABEL[profile.headline_metric]
    extra = " Transcripts are written in hiragana (pykakasi)." if profile.transliteration == "hiragana" else ""
    return (f"Text is normalised by the repo's `text_normalizer.py` for training, evaluation and the "
            f"language model alike. WER counts {split}; {headline} is the headline metric.{extra}")


def _usage(facts: CardFacts) -> str:
    command = facts.eval_command or (
        "python eval.py --model_id ./ --dataset PATH/TO/cv-corpus --config "
        f"{facts.profile.code} --split test --log_outputs")
    return "\n".join([
        "## Usage", "",
        "```bash",
        "pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt",
        command,
        "```",
    ])


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _evaluation_table(facts: CardFacts) -> str:
    rows = facts.evaluation
    if not rows:
        return ""
    metrics = [m for m in facts.profile.metrics
               if any(m in row.get(side, {}) for row in rows for side in ("without_lm", "with_lm"))]
    header = ["Model", "Metric"] + [row["dataset"] for row in rows]
    lines = ["## Evaluation results", "",
             "Fractions, as `eval.py` writes them (0.25 = 25%).", "",
             "| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join([":---:"] * len(header)) + "|"]
    for side, title in (("without_lm", "w/o LM"), ("with_lm", "w/ LM")):
        if not any(row.get(side) for row in rows):
            continue
        for i, metric in enumerate(metrics):
            cells = [title if i == 0 else "", METRIC_LABEL[metric]]
            cells += [_fmt(row.get(side, {}).get(metric)) for row in rows]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _corrections(facts: CardFacts) -> str:
    if not facts.corrections:
        return ""
    return "\n".join(["## Corrections to the original card", ""] +
                     [f"- {note.strip()}" for note in facts.corrections])


def _language_model(facts: CardFacts) -> str:
    """The n-gram LM's weights and what tuning them on the dev split measured."""
    tuning = facts.lm_tuning
    if not tuning:
        return ""
    dev = " ".join(str(part) for part in (Path(str(tuning.get("dataset", ""))).name, tuning.get("config"))
                   if part)
    dev = f"{dev} ({tuning.get('split', 'dev')})" if dev else "the dev split"
    lines = ["## Language model", "",
             "An n-gram LM (KenLM) in `language_model/`, applied by pyctcdecode's beam search. "
             f"Its weights were tuned on {tuning.get('dev_clips', '?')} clips of {dev}; the best are in "
             "`language_model/attrs.json`.", "",
             "| decoder | alpha | beta | beam width | dev WER | dev CER |",
             "|:---|:---:|:---:|:---:|:---:|:---:|"]
    if tuning.get("greedy_wer") is not None:
        lines.append(f"| greedy (no LM) | | | | {_fmt(tuning['greedy_wer'])} | {_fmt(tuning.get('greedy_cer'))} |")
    if tuning.get("default_wer") is not None:
        lines.append(f"| LM, pyctcdecode's default weights | | | | {_fmt(tuning['default_wer'])} | "
                     f"{_fmt(tuning.get('default_cer'))} |")
    lines.append(f"| LM, tuned | {tuning.get('alpha', '')} | {tuning.get('beta', '')} | "
                 f"{tuning.get('beam_width', '')} | {_fmt(tuning.get('wer'))} | {_fmt(tuning.get('cer'))} |")
    if tuning.get("heatmap"):
        lines += ["", f"![Dev WER over the alpha/beta grid]({tuning['heatmap']})"]
    return "\n".join(lines)


def _training(facts: CardFacts) -> str:
    lines = ["## Training procedure", ""]
    if facts.training_curve:
        lines += [f"![Training curve]({facts.training_curve})", ""]
    if facts.hyperparameters:
        lines += ["### Training hyperparameters", "",
                  "The following hyperparameters were used during training:"]
        lines += [f"- {key}: {value}" for key, value in facts.hyperparameters.items()]
        lines.append("")
    table = facts.training_results
    if table.get("rows"):
        columns = table["columns"]
        lines += ["### Training results", "",
                  "| " + " | ".join(_cell(c) for c in columns) + " |",
                  "|" + "|".join([":---:"] * len(columns)) + "|"]
        for row in table["rows"]:
            cells = [_cell(c) for c in row] + [""] * (len(columns) - len(row))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() if len(lines) > 2 else ""


def _framework(facts: CardFacts) -> str:
    versions = facts.framework_versions or installed_versions()
    return "\n".join(["### Framework versions", ""] + [f"- {k} {v}" for k, v in versions.items()])


def installed_versions() -> dict[str, str]:
    names = {"Transformers": "transformers", "Pytorch": "torch", "Datasets": "datasets",
             "Tokenizers": "tokenizers", "pyctcdecode": "pyctcdecode"}
    found = {}
    for label, package in names.items():
        try:
            found[label] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


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
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def check_card(text: str, facts: CardFacts) -> None:
    """Parses the card back with huggingface_hub: every value must survive the YAML trip."""
    parsed = ModelCard(text).data
    expected = card_data(facts)
    for key in ("language", "license", "tags", "datasets", "model_name"):
        if getattr(parsed, key) != getattr(expected, key):
            raise CtcforgeError(f"card field {key!r} does not survive YAML: wrote "
                                f"{getattr(expected, key)!r}, read back {getattr(parsed, key)!r}")
    if (parsed.eval_results or []) != (expected.eval_results or []):
        raise CtcforgeError("card model-index does not survive YAML; check dataset and metric names")


# ---------------------------------------------------------------------------- repo artefacts

def read_eval_results(repo: Path) -> list[EvalFigures]:
    """Every `*_eval_results.txt` in the repo root and in eval/greedy, eval/lm."""
    places = [(repo, "unknown")] + [(repo / "eval" / folder, side) for folder, side in DECODER_FOLDERS.items()]
    figures = []
    for folder, decoder in places:
        for path in sorted(folder.glob(f"*{RESULTS_SUFFIX}")):
            dataset_id = path.name[: -len(RESULTS_SUFFIX)]
            parts = dataset_id.rsplit("_", 2)
            if len(parts) != 3:
                raise CtcforgeError(f"{path}: name is not <dataset>_<config>_<split>{RESULTS_SUFFIX}")
            decoder = _decoder_from_summary(folder / f"{dataset_id}{SUMMARY_SUFFIX}") or decoder
            figures.append(EvalFigures(*parts, decoder=decoder, metrics=_parse_results(path)))
    return figures


def _decoder_from_summary(path: Path) -> str | None:
    """eval.py records its decoder ("greedy" or "lm") beside the results; older runs did not."""
    if not path.is_file():
        return None
    try:
        decoder = json.loads(path.read_text(encoding="utf-8")).get("decoder")
    except (json.JSONDecodeError, AttributeError):
        raise CtcforgeError(f"{path}: not eval.py's summary JSON; delete it or rerun eval.py") from None
    return {"greedy": "without_lm", "lm": "with_lm"}.get(decoder)


def _parse_results(path: Path) -> dict[str, float]:
    metrics = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in METRIC_LABEL:
            try:
                metrics[key.strip().lower()] = float(value)
            except ValueError:
                raise CtcforgeError(f"{path}: {line!r} is not 'WER: <number>'") from None
    if not metrics:
        raise CtcforgeError(f"{path}: expected lines 'WER: <number>' and 'CER: <number>'")
    return metrics


def evaluation_from_runs(runs: list[EvalFigures], profile: Profile, lm_present: bool) -> tuple[list, list]:
    """Body table rows and model-index results from eval.py's result files."""
    rows: dict[str, dict] = {}
    results = []
    for run in runs:
        side = run.decoder if run.decoder != "unknown" else ("with_lm" if lm_present else "without_lm")
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
    return list(rows.values()), results


def training_from_state(repo: Path, profile: Profile) -> tuple[dict, dict]:
    """Hyperparameters and the training-results table from trainer_state.json (and the
    hyperparameters the training script records)."""
    hyper_file = repo / "training_hyperparameters.json"
    hyperparameters = json.loads(hyper_file.read_text(encoding="utf-8")) if hyper_file.is_file() else {}
    state_file = repo / "trainer_state.json"
    if not state_file.is_file():
        return hyperparameters, {}
    history = json.loads(state_file.read_text(encoding="utf-8")).get("log_history", [])
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


def _num(value: float | None, digits: int = 4) -> str:
    return "No log" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------- the verb

def facts_from_answers(answers: Answers, profile: Profile) -> CardFacts:
    if answers.spec:
        facts = CardFacts.from_spec(spec_from_dict(answers.spec, source=ANSWERS_FILE), profile)
        # `new --spec X --base-model M` stamps M's architecture; the card must say M.
        return replace(facts, base_model=answers.base_model)
    return CardFacts(language=profile.code, model_name=answers.model_name, base_model=answers.base_model,
                     profile=profile)


def rebuild_card(repo: Path) -> Path:
    """`ctcforge card`: the card from the answers record plus what training and eval.py left
    in the repo; measured results replace the ones a spec reported."""
    answers = Answers.load(repo)
    profile = load_profile(answers.language)
    facts = facts_from_answers(answers, profile)
    runs = read_eval_results(repo)
    if runs:
        lm_present = any((repo / "language_model").glob("*"))
        evaluation, results = evaluation_from_runs(runs, profile, lm_present)
        facts = replace(facts, evaluation=evaluation, results=results)
    hyperparameters, table = training_from_state(repo, profile)
    if hyperparameters:
        facts = replace(facts, hyperparameters=hyperparameters)
    if table:
        facts = replace(facts, training_results=table)
    curve = draw_training_curve(repo, profile)
    if curve:
        facts = replace(facts, training_curve=curve)
    tuning = read_lm_tuning(repo)
    if tuning:
        facts = replace(facts, lm_tuning=tuning)
    return write_card(facts, repo)


TRAINING_CURVE = "training_curve.png"
LM_TUNING_DIR = "lm_tuning"


def draw_training_curve(repo: Path, profile: Profile) -> str | None:
    """training_curve.png from trainer_state.json; its path relative to the repo, or None."""
    state_file = repo / "trainer_state.json"
    if not state_file.is_file():
        return None
    history = json.loads(state_file.read_text(encoding="utf-8")).get("log_history", [])
    drawn = plots.training_curve(history, repo / TRAINING_CURVE, list(profile.metrics))
    return TRAINING_CURVE if drawn else None


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
