"""The model card (`README.md`) of a language repo.

The YAML front matter comes out of huggingface_hub's data model (`ModelCardData`,
`EvalResult`), never out of typed YAML. The body is a list of generated sections, each
fenced by `<!-- ctcforge:begin NAME -->` / `<!-- ctcforge:end NAME -->` markers, so a
rebuild replaces only those and keeps every line a person wrote outside them.

The repo's files (answers, training_run.json, trainer state, eval.py results) are read
into `CardFacts` first; the section functions only turn those facts into markdown. Until
the repo is trained, the training section suggests the command for its base model; after,
it shows the command training_run.json records, and the framework versions are that run's.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ctcforge import plots
from ctcforge.answers import ANSWERS_FILE, Answers
from ctcforge.beam_search import has_language_model
from ctcforge.catalogue import BaseModel, has_weights, looks_like_path, resolve_base_model
from ctcforge.error_rates import SPACELESS_SPLITS
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
TRAINING_SCRIPT = "run_speech_recognition_ctc.py"
# What the training script writes once a run has finished (into the repo and its output_dir).
TRAINING_RUN_FILE = "training_run.json"
TRAINER_STATE_FILE = "trainer_state.json"
HYPERPARAMETERS_FILE = "training_hyperparameters.json"
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
class TrainingRun:
    """training_run.json, as the repo's training script writes it at the end of a run."""

    command: str  # the shell command really run
    output_dir: str  # absolute
    started_from: str  # a base model id or folder, "random initialisation", or a checkpoint
    steps: int
    framework_versions: dict[str, str]
    finished_at: str  # ISO 8601

    def argument(self, name: str) -> str | None:
        """The value the command gave `--name` (as `--name VALUE` or `--name=VALUE`)."""
        argv = shlex.split(self.command)
        for i, token in enumerate(argv):
            if token == f"--{name}" and i + 1 < len(argv):
                return argv[i + 1]
            if token.startswith(f"--{name}="):
                return token.split("=", 1)[1]
        return None


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
        "standalone": _standalone(facts),
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
    characters = ("characters without spaces, since the language writes none"
                  if profile.word_split in SPACELESS_SPLITS else "characters, spaces included")
    headline = METRIC_LABEL[profile.headline_metric]
    extra = " Transcripts are written in hiragana (pykakasi)." if profile.transliteration == "hiragana" else ""
    return (f"Text is normalised by the repo's `text_normalizer.py` for training, evaluation and the "
            f"language model alike, and scored by its `error_rates.py`. WER counts {split}; CER counts "
            f"{characters}; {headline} is the headline metric.{extra}")


def _usage(facts: CardFacts) -> str:
    return "\n".join([
        "## Usage", "",
        "```bash",
        "pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt",
        eval_command(facts),
        "```",
    ])


def _dataset_and_config(facts: CardFacts) -> tuple[str, str]:
    return facts.dataset or DATASET_PLACEHOLDER, facts.dataset_config or facts.profile.code


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


def _starting_point(facts: CardFacts) -> str:
    """Where `--model_name_or_path ./` takes its weights from before the repo holds any."""
    base = facts.base
    recorded = "`--model_name_or_path ./` starts from the base model that `base_model.json` records"
    if base is None:
        return f"{recorded}, `{facts.base_model}`."
    if base.source == "scratch":
        start = (f"{recorded}, ctcforge's `tiny` architecture: random weights, trained from scratch "
                 "(nothing is frozen, since a random encoder has to learn too).")
    else:
        weights = (f"the weights of the local folder `{base.local_path}`" if base.source == "local" else
                   f"[{base.id}](https://huggingface.co/{base.id}), loaded with `from_pretrained` from the "
                   "Hub or its local cache")
        start = f"{recorded}: {weights}, under a new CTC head sized to `vocab.json`."
        start += (" Its convolutional feature encoder stays frozen (`--freeze_feature_encoder`, the default "
                  "for wav2vec2 models)." if base.family == "wav2vec2" else
                  " A w2v-BERT model has no convolutional feature encoder to freeze.")
    return start + " Once this folder holds trained weights, `./` continues from them."


GPU_FLAGS = ("GPU flags: `--fp16` trains in half precision (`--bf16` instead on Ampere or newer GPUs; "
             "`--fp16` without a CUDA GPU trains in bf16, saying so), `--gradient_checkpointing` saves memory "
             "for compute, and `--group_by_length` batches clips of similar length, so less is padding.")


def _training_command(facts: CardFacts) -> list[str]:
    run = facts.training_run
    if run is None:
        lines = ["Not trained yet. The command that fine-tunes this repo, with the settings ctcforge's "
                 "catalogue suggests for its base model"
                 + ("" if facts.dataset else f" (`{DATASET_PLACEHOLDER}` stands for a Common Voice release "
                                              "folder)") + ":", "",
                 "```bash", shell_lines(suggested_training_argv(facts)), "```", "",
                 _starting_point(facts) + " " + GPU_FLAGS]
    else:
        lines = [f"The command that trained this model ({run.steps} steps from {run.started_from}, finished "
                 f"{run.finished_at}), as `{TRAINING_RUN_FILE}` records it:", "",
                 "```bash", shell_lines(shlex.split(run.command)), "```", "", GPU_FLAGS]
        if facts.weights_folder:
            lines += ["", f"The trained weights are in `{facts.weights_folder}`, the run's `--output_dir`, not in "
                      "this folder: copy its `model.safetensors` (or `pytorch_model.bin`) and `config.json` here "
                      "before evaluating `./` or pushing, or train with `--output_dir ./`."]
    return lines + ["", "Then the n-gram LM, tuned on the dev split (`--text FILE` adds more text), and the "
                    "test-split evaluation:", "",
                    "```bash", lm_command(facts), eval_command(facts), "```"]


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
    lines = ["## Training procedure", "", *_training_command(facts), ""]
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
    return "\n".join(lines).rstrip()


def _framework(facts: CardFacts) -> str:
    """The training run's versions (or the original's, for a spec), never those of the
    environment that happens to run `ctcforge card`."""
    if not facts.framework_versions:
        return "\n".join(["### Framework versions", "",
                          "Not trained yet: `requirements.txt` pins the versions training will run with."])
    return "\n".join(["### Framework versions", ""] +
                     [f"- {k} {v}" for k, v in facts.framework_versions.items()])


def _standalone(facts: CardFacts) -> str:
    """What the repo needs outside Python, and how to rebuild its LM without ctcforge."""
    return "\n".join([
        "## Running without ctcforge", "",
        "Besides the Python packages above, this folder needs FFmpeg's shared libraries, which torchcodec "
        "loads to decode audio (Debian and Ubuntu: `apt-get install ffmpeg`). espeak-ng is not needed.", "",
        "`ctcforge lm` builds `language_model/`. Without it, KenLM's `lmplz` and `build_binary` are compiled "
        "from the C++ sources in the PyPI sdist `kenlm==0.3.0` (its wheel holds only the Python module), "
        "and the LM text is one sentence a line through this repo's normaliser, with no test-split "
        "sentence in it:", "",
        "```bash",
        "apt-get install cmake build-essential libboost-program-options-dev libboost-system-dev "
        "libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev",
        "pip download --no-deps --no-binary kenlm kenlm==0.3.0 && tar -xzf kenlm-0.3.0.tar.gz",
        "cmake -S kenlm-0.3.0 -B kenlm-build -DCMAKE_BUILD_TYPE=Release && make -C kenlm-build lmplz build_binary",
        "python -c 'import sys, text_normalizer; n = text_normalizer.load(\"language_profile.json\"); "
        "print(*filter(None, map(n, sys.stdin)), sep=\"\\n\")' < sentences.txt > text.txt",
        "kenlm-build/bin/lmplz -o 5 -S 10% --discount_fallback < text.txt > 5gram.arpa",
        "kenlm-build/bin/build_binary 5gram.arpa language_model/lm.binary",
        "```", "",
        "pyctcdecode loads `language_model/` only if it holds exactly three files: `lm.binary`, `unigrams.txt` "
        "(the words of the ARPA's `\\1-grams:` section, one a line) and `attrs.json` (`{\"alpha\": 0.5, "
        "\"beta\": 1.5, \"unk_score_offset\": -10.0, \"score_boundary\": true}`: the LM weight, the word "
        "bonus and pyctcdecode's defaults). A first build also needs what `ctcforge lm` writes beside it: "
        "`alphabet.json` (the model's labels) and `\"processor_class\": \"Wav2Vec2ProcessorWithLM\"` in "
        "`preprocessor_config.json`.",
    ])


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
    # language_bcp47 is an extra field, an attribute only when the YAML holds it.
    for key in ("language", "language_bcp47", "license", "tags", "datasets", "model_name"):
        wrote, read = getattr(expected, key, None), getattr(parsed, key, None)
        if read != wrote:
            raise CtcforgeError(f"card field {key!r} does not survive YAML: wrote {wrote!r}, read back {read!r}")
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


def training_from_state(folder: Path, profile: Profile) -> tuple[dict, dict]:
    """Hyperparameters and the training-results table from the trainer_state.json (and the
    hyperparameters the training script records) in `folder`."""
    hyperparameters = _read_json(folder / HYPERPARAMETERS_FILE) or {}
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


def read_log_history(folder: Path) -> list[dict]:
    """trainer_state.json's log history; empty when there is no such file."""
    state = _read_json(folder / TRAINER_STATE_FILE) or {}
    history = state.get("log_history", [])
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        raise CtcforgeError(f"{folder / TRAINER_STATE_FILE}: log_history is not a list of records; "
                            "delete the file or train again to rewrite it")
    return history


def _read_json(path: Path) -> dict | None:
    """A JSON object the training script wrote, or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CtcforgeError(f"{path}: not JSON ({exc}); delete it or train again to rewrite it") from None
    if not isinstance(data, dict):
        raise CtcforgeError(f"{path}: not a JSON object; delete it or train again to rewrite it")
    return data


def read_training_run(repo: Path) -> TrainingRun | None:
    """training_run.json; None when there is none (the repo is not trained yet)."""
    path = repo / TRAINING_RUN_FILE
    data = _read_json(path)
    if data is None:
        return None
    kinds = {"command": str, "output_dir": str, "started_from": str, "steps": int, "framework_versions": dict,
             "finished_at": str}
    for key, kind in kinds.items():
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CtcforgeError(f"{path}: {key!r} should be a {kind.__name__}, found {value!r}; delete the file "
                                "or train again to rewrite it")
    versions = data["framework_versions"]
    if not all(isinstance(v, str) for v in versions.values()):
        raise CtcforgeError(f"{path}: framework_versions should map names to version strings, found {versions!r}")
    try:
        shlex.split(data["command"])
    except ValueError as exc:
        raise CtcforgeError(f"{path}: command is not a shell command line ({exc})") from None
    return TrainingRun(**{key: data[key] for key in kinds})


def trained_weights_folder(repo: Path, run: TrainingRun | None) -> Path | None:
    """The folder holding the weights `run` trained: the repo, or else the run's output_dir
    when only it has them. None when there is no run or neither folder holds weights (a run
    whose weights were deleted or moved trained nothing the card can describe)."""
    if run is None:
        return None
    if has_weights(repo):
        return repo
    output_dir = Path(run.output_dir)
    output_dir = output_dir if output_dir.is_absolute() else repo / output_dir
    return output_dir if has_weights(output_dir) else None


def dataset_label(dataset: str) -> str:
    """The card's `datasets:` name for a dataset argument: a Hub id as it is, a local folder
    by its own name (a Common Voice release folder's, cv-corpus-17.0-2024-03-15, names the
    release; its absolute path would name only the machine it was on)."""
    if looks_like_path(dataset) or Path(dataset).is_absolute():
        return Path(dataset.rstrip("/\\")).name or dataset
    return dataset


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
                      datasets=[dataset_label(answers.dataset)] if answers.dataset else [], **stamped)
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
    if not licence or licence == facts.license:
        return facts
    if not from_spec:
        return replace(facts, license=licence)
    if licence in PERMISSIVE_LICENCES:
        return facts
    note = (f"The original card's licence, {facts.license}, is replaced by {licence}: the base model "
            f"{facts.base.id} is released under {licence}, and a model fine-tuned from its weights inherits it.")
    return replace(facts, license=licence, corrections=[*facts.corrections, note])


def rebuild_card(repo: Path) -> Path:
    """`ctcforge card`: the card from the answers record plus what training and eval.py left
    in the repo (or in the output_dir its training run records); measured results replace
    the ones a spec reported, and a retrained model drops the spec's training facts."""
    answers = Answers.load(repo)
    profile = load_profile(answers.language)
    facts = facts_from_answers(answers, profile)
    run = read_training_run(repo)
    trained_in = trained_weights_folder(repo, run)
    if trained_in is not None:
        # The data it was really trained on, for `datasets:` and the LM and eval commands.
        dataset = run.argument("dataset_name") or facts.dataset
        facts = replace(facts, training_run=run, weights_folder=None if trained_in == repo else str(trained_in),
                        hyperparameters={}, training_results={}, framework_versions=dict(run.framework_versions),
                        dataset=dataset, dataset_config=run.argument("dataset_config_name") or facts.dataset_config,
                        datasets=[dataset_label(dataset)] if dataset else facts.datasets)
    runs = read_eval_results(repo)
    if runs:
        lm_present = has_language_model(str(repo))
        evaluation, results = evaluation_from_runs(runs, profile, lm_present)
        facts = replace(facts, evaluation=evaluation, results=results)
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
    return write_card(facts, repo)


TRAINING_CURVE = "training_curve.png"
LM_TUNING_DIR = "lm_tuning"


def draw_training_curve(state_folder: Path, repo: Path, profile: Profile) -> str | None:
    """training_curve.png in the repo, from the trainer_state.json in `state_folder`; its
    path relative to the repo, or None."""
    history = read_log_history(state_folder)
    if not history:
        return None
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
