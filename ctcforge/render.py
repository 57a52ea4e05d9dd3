"""`ctcforge new`: stamp a flat language repo from the template tree.

`templates/repo/` is laid out like its output. Files ending in `.jinja` are rendered
with jinja2 (StrictUndefined, so a missing answer is an error, not an empty string) and
lose the suffix; every other file is copied as it is. The shared modules
(`text_normalizer.py`, `speech_data.py`, `starting_weights.py`) are copied from the
ctcforge package itself, so a repo runs the very code ctcforge tests. The answers that made the repo are recorded in
`.ctcforge-answers.yml`, so `ctcforge card` and a rerun of `ctcforge new` can rebuild it.

The record also keeps the ctcforge version and a sha256 of every stamped file, so
`ctcforge new --force` over a repo updates what nobody edited, keeps what a person did
(writing ctcforge's version beside it as NAME.new), and leaves the labels and architecture
under trained weights alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import jinja2

from ctcforge.answers import ANSWERS_FILE, Answers, answers_profile, file_digest
from ctcforge.atomic import write_bytes_atomically, write_text_atomically
from ctcforge.card import facts_from_answers, rebuild_card, write_card
from ctcforge.catalogue import has_weights, resolve_base_model, write_model_files
from ctcforge.errors import CtcforgeError
from ctcforge.profiles import Profile, load_profile, load_profile_file
from ctcforge.repo_modules import SHARED_MODULES
from ctcforge.spec import load_spec, spec_from_dict
from ctcforge.text_normalizer import PROFILE_FILE
from ctcforge.vocab import vocab_from_profile, vocab_from_texts

PACKAGE = Path(str(resources.files("ctcforge")))
TEMPLATE_DIR = PACKAGE / "templates" / "repo"
DEFAULT_BASE_MODEL = "facebook/wav2vec2-xls-r-300m"


# Files a training run's weights are shaped by: their labels (vocab.json and the tokenizer)
# and their architecture (config.json, and the feature extractor the encoder was trained on).
# Over trained weights `new --force` never rewrites them.
WEIGHT_SHAPING_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                        "config.json", "preprocessor_config.json")
# Rebuilt by their own rules, not compared by hash: the card keeps a person's text outside
# its generated sections, and the answers record is rewritten on every stamp.
SELF_MERGING_FILES = ("README.md", ANSWERS_FILE)
NEW_SUFFIX = ".new"


@dataclass
class Update:
    """What `new --force` did to each file ctcforge stamps (paths relative to the repo)."""

    updated: list[str] = field(default_factory=list)  # unchanged since stamping (or new): replaced
    kept: list[str] = field(default_factory=list)  # edited by a person: ctcforge's version is NAME.new
    unchanged: list[str] = field(default_factory=list)  # as ctcforge would write, or edited over no news
    weight_shaping: list[str] = field(default_factory=list)  # kept as they are, under trained weights

    def lines(self) -> list[str]:
        """One line per kind of outcome that happened, then how many files were unchanged."""
        outcomes = [("updated", "", self.updated),
                    ("kept", f" you edited, ctcforge's version beside each as NAME{NEW_SUFFIX}", self.kept),
                    ("kept", " the trained weights were built on", self.weight_shaping)]
        return [f"{verb} {len(names)}{why}: {', '.join(names)}" for verb, why, names in outcomes if names] + [
            f"unchanged {len(self.unchanged)}"]


def new_repo(language: str | None, output_dir: Path, *, base_model: str | None = None,
             dataset: str | None = None, dataset_config: str | None = None,
             spec_path: Path | None = None, profile_path: Path | None = None, force: bool = False,
             report: Callable[[str], None] | None = None) -> Path:
    """Stamps a repo into `output_dir`; with `force` over a repo ctcforge made, updates it
    (see `update_files`), its recorded answers filling in what the command line leaves out,
    and passes each line of what it did to `report`. `profile_path` stamps from a profile
    file (one `ctcforge profile` drafted) instead of a shipped profile."""
    _prepare_output_dir(output_dir, force)
    previous = Answers.load(output_dir) if (output_dir / ANSWERS_FILE).is_file() else None
    answers = _answers(language, base_model, dataset, dataset_config, spec_path, previous, profile_path)
    # Every stamp is made beside its destination first, so a failure while stamping leaves
    # no half-made repo behind, and an existing one as it was.
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a repo is an ordinary folder
        stamp(answers, staging)
        answers.files = {name: file_digest(staging / name) for name in _stamped_files(staging)}
        if output_dir.is_dir():
            update = update_files(staging, output_dir, previous, answers)
            answers.save(output_dir)
            rebuild_card(output_dir)
            for line in update.lines() if report else []:
                report(line)
        else:
            answers.save(staging)
            staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def _answers(language: str | None, base_model: str | None, dataset: str | None, dataset_config: str | None,
             spec_path: Path | None, previous: Answers | None, profile_path: Path | None = None) -> Answers:
    """The answers to stamp with: the command line's, and for what it leaves out, those the
    repo was stamped with before (when it was)."""
    given_profile = load_profile_file(Path(profile_path).expanduser()) if profile_path else None
    if given_profile and language and language.lower() != given_profile.code.lower():
        raise CtcforgeError(f"language {language!r} disagrees with --profile {profile_path}, which is for "
                            f"{given_profile.code!r}")
    language = language or (given_profile.code if given_profile else None)
    spec = load_spec(spec_path) if spec_path else None
    if spec is None and previous is not None and previous.spec:
        spec = spec_from_dict(previous.spec, source=ANSWERS_FILE)
    if spec and language and language.lower() != spec.language.lower():
        where = spec_path or f"the spec in {ANSWERS_FILE}"
        raise CtcforgeError(f"language {language!r} disagrees with {where}, which is for {spec.language!r}")
    language = language or (spec.language if spec else None) or (previous.language if previous else None)
    if not language:
        raise CtcforgeError("name a language (e.g. `ctcforge new hy-AM`), or give --spec or --profile")
    if given_profile is None and previous is not None and previous.profile is not None \
            and previous.language.lower() == language.lower():
        given_profile = answers_profile(previous)
    profile = given_profile or load_profile(language)
    if previous is not None and dataset is None:
        dataset, dataset_config = previous.dataset, dataset_config or previous.dataset_config
    if previous is not None and base_model is None and spec_path is None:
        base_model = previous.base_model
    base = resolve_base_model(base_model or (spec.base_model if spec else DEFAULT_BASE_MODEL))
    if dataset and Path(dataset).expanduser().is_dir():
        # Recorded absolute, so the answers still find it from inside the repo.
        dataset = str(Path(dataset).expanduser().resolve())
    if spec:
        model_name = spec.model_name
    elif previous is not None and (previous.base_model, previous.language) == (base.id, profile.code):
        model_name = previous.model_name
    else:
        model_name = default_model_name(base.id, profile.code)
    return Answers(language=profile.code, base_model=base.id, model_name=model_name, dataset=dataset,
                   dataset_config=dataset_config or (profile.code if dataset else None),
                   spec=asdict(spec) if spec else None,
                   profile=given_profile.to_dict() if given_profile else None)


def _stamped_files(folder: Path) -> list[str]:
    """The files a stamp wrote that `new --force` compares by hash, relative to `folder`."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and path.relative_to(folder).as_posix() not in SELF_MERGING_FILES)


def update_files(staging: Path, repo: Path, previous: Answers | None, answers: Answers) -> Update:
    """Brings `repo` to the stamp in `staging` without losing work: a file as ctcforge last
    stamped it (its recorded sha256) is replaced; one a person edited stays, with the new
    version beside it as NAME.new; over trained weights, the files that shaped them stay."""
    recorded = previous.files if previous else {}
    trained = has_weights(repo)
    if trained:
        _refuse_reshaping_weights(staging, repo, previous, answers)
    update = Update()
    for name in _stamped_files(staging):
        source, target = staging / name, repo / name
        if target.is_file() and target.read_bytes() == source.read_bytes():
            update.unchanged.append(name)
        elif trained and name in WEIGHT_SHAPING_FILES and target.is_file():
            update.weight_shaping.append(name)
        elif not target.exists() or recorded.get(name) == file_digest(target):
            write_bytes_atomically(target, source.read_bytes())
            update.updated.append(name)
        elif recorded.get(name) == file_digest(source):
            # Edited, but ctcforge would stamp what it stamped before: nothing newer to offer.
            update.unchanged.append(name)
        else:
            write_bytes_atomically(target.with_name(target.name + NEW_SUFFIX), source.read_bytes())
            update.kept.append(name)
    (repo / "language_model").mkdir(exist_ok=True)
    return update


def _refuse_reshaping_weights(staging: Path, repo: Path, previous: Answers | None, answers: Answers) -> None:
    """Trained weights fit their labels and architecture; answers that would give the repo
    others (another base model, dataset or language) are refused rather than kept silently."""
    asked = {key: getattr(answers, key) for key in ("language", "base_model", "dataset", "dataset_config")}
    had = {key: getattr(previous, key) for key in asked} if previous else {}
    changed = [f"{key} {had.get(key)!r} -> {value!r}" for key, value in asked.items() if had.get(key) != value]
    if changed and _weights_would_not_fit(staging, repo):
        raise CtcforgeError(f"{repo} holds trained weights, and {'; '.join(changed)} would change the vocab.json or "
                            "config.json under them: stamp a new repo with another --output-dir")


def _weights_would_not_fit(staging: Path, repo: Path) -> bool:
    """Whether the stamp's labels or architecture differ from the repo's."""
    def shape(folder: Path) -> tuple:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return vocab, [config.get(key) for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")]

    if not ((repo / "vocab.json").is_file() and (repo / "config.json").is_file()):
        return True
    return shape(staging) != shape(repo)


def default_model_name(base_model: str, code: str) -> str:
    short = "ctcforge-tiny" if base_model == "tiny" else Path(base_model.rstrip("/")).name
    return f"{short}-{code}"


def _prepare_output_dir(output_dir: Path, force: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise CtcforgeError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise CtcforgeError(f"{output_dir} is not empty; pass --force to stamp over it "
                            "(files you edited are kept, with ctcforge's version beside them as NAME.new)")
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


def stamp(answers: Answers, repo: Path) -> None:
    """Writes every generated file of the repo from its answers, all but the answers record."""
    profile = answers_profile(answers)
    base = resolve_base_model(answers.base_model)
    render_templates(TEMPLATE_DIR, repo, _template_context(answers, profile, base.family))
    for module in SHARED_MODULES:
        write_bytes_atomically(repo / module, (PACKAGE / module).read_bytes())
    write_text_atomically(repo / PROFILE_FILE,
                          json.dumps(profile.to_dict(), ensure_ascii=False, indent=2) + "\n")
    vocab = _vocabulary(answers, profile)
    write_model_files(base, vocab, repo)
    (repo / "language_model").mkdir(exist_ok=True)
    write_card(facts_from_answers(answers, profile), repo)


def _template_context(answers: Answers, profile: Profile, family: str) -> dict:
    return {"answers": asdict(answers), "profile": profile.to_dict(), "family": family}


def render_templates(source: Path, target: Path, context: dict) -> list[Path]:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(source)),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    written = []
    for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        relative = path.relative_to(source)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jinja":
            destination = destination.with_suffix("")
            try:
                text = environment.get_template(relative.as_posix()).render(context)
            except jinja2.UndefinedError as exc:
                raise CtcforgeError(f"template {relative}: {exc}") from exc
            write_text_atomically(destination, text)
        else:
            write_bytes_atomically(destination, path.read_bytes())
        written.append(destination)
    return written


def _vocabulary(answers: Answers, profile: Profile) -> dict[str, int]:
    """The profile's alphabet, or, given a dataset, the letters of its training text."""
    if not answers.dataset:
        return vocab_from_profile(profile)
    from ctcforge.speech_data import DatasetError, load_speech_dataset

    try:
        train = load_speech_dataset(answers.dataset, answers.dataset_config, answers.train_split)
    except DatasetError as exc:
        raise CtcforgeError(str(exc)) from exc
    texts = train["sentence"]
    if not texts:
        raise CtcforgeError(f"{answers.dataset}: the {answers.train_split} split has no sentences")
    return vocab_from_texts(texts, profile.normalizer())
