"""`ctcforge new`: stamp a flat language repo from the template tree.

`templates/repo/` is laid out like its output. Files ending in `.jinja` are rendered
with jinja2 (StrictUndefined, so a missing answer is an error, not an empty string) and
lose the suffix; every other file is copied as it is. The shared modules
(`text_normalizer.py`, `speech_data.py`, `starting_weights.py`) are copied from the
ctcforge package itself, so a repo runs the very code ctcforge tests. The answers that made the repo are recorded in
`.ctcforge-answers.yml`, so `ctcforge card` and a rerun of `ctcforge new` can rebuild it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import jinja2

from ctcforge.answers import Answers
from ctcforge.atomic import write_bytes_atomically, write_text_atomically
from ctcforge.card import facts_from_answers, write_card
from ctcforge.catalogue import resolve_base_model, write_model_files
from ctcforge.errors import CtcforgeError
from ctcforge.profiles import Profile, load_profile
from ctcforge.repo_modules import SHARED_MODULES
from ctcforge.spec import load_spec
from ctcforge.text_normalizer import PROFILE_FILE
from ctcforge.vocab import vocab_from_profile, vocab_from_texts

PACKAGE = Path(str(resources.files("ctcforge")))
TEMPLATE_DIR = PACKAGE / "templates" / "repo"
DEFAULT_BASE_MODEL = "facebook/wav2vec2-xls-r-300m"


def new_repo(language: str | None, output_dir: Path, *, base_model: str | None = None,
             dataset: str | None = None, dataset_config: str | None = None,
             spec_path: Path | None = None, force: bool = False) -> Path:
    spec = load_spec(spec_path) if spec_path else None
    if spec and language and language.lower() != spec.language.lower():
        raise CtcforgeError(f"language {language!r} disagrees with {spec_path}, which is for {spec.language!r}")
    if not (language or spec):
        raise CtcforgeError("name a language (e.g. `ctcforge new hy-AM`) or give --spec")
    profile = load_profile(spec.language if spec else language)
    base = resolve_base_model(base_model or (spec.base_model if spec else DEFAULT_BASE_MODEL))
    if dataset and Path(dataset).expanduser().is_dir():
        # Recorded absolute, so the answers still find it from inside the repo.
        dataset = str(Path(dataset).expanduser().resolve())
    answers = Answers(language=profile.code, base_model=base.id,
                      model_name=spec.model_name if spec else default_model_name(base.id, profile.code),
                      dataset=dataset, dataset_config=dataset_config or (profile.code if dataset else None),
                      spec=asdict(spec) if spec else None)
    _prepare_output_dir(output_dir, force)
    if output_dir.is_dir():
        stamp(answers, output_dir)  # --force over an existing repo: rewrite in place
        return output_dir
    # A new repo is stamped beside its destination and moved in whole, so a failure
    # leaves no half-made repo behind.
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a repo is an ordinary folder
        stamp(answers, staging)
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def default_model_name(base_model: str, code: str) -> str:
    short = "ctcforge-tiny" if base_model == "tiny" else Path(base_model.rstrip("/")).name
    return f"{short}-{code}"


def _prepare_output_dir(output_dir: Path, force: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise CtcforgeError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise CtcforgeError(f"{output_dir} is not empty; pass --force to stamp over it "
                            "(the card keeps text you wrote outside its generated sections)")
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


def stamp(answers: Answers, repo: Path) -> None:
    """Writes every generated file of the repo from its answers."""
    profile = load_profile(answers.language)
    base = resolve_base_model(answers.base_model)
    render_templates(TEMPLATE_DIR, repo, _template_context(answers, profile, base.family))
    for module in SHARED_MODULES:
        write_bytes_atomically(repo / module, (PACKAGE / module).read_bytes())
    write_text_atomically(repo / PROFILE_FILE,
                          json.dumps(profile.to_dict(), ensure_ascii=False, indent=2) + "\n")
    vocab = _vocabulary(answers, profile)
    write_model_files(base, vocab, repo)
    (repo / "language_model").mkdir(exist_ok=True)
    answers.save(repo)
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
