"""`ctcforge new`: stamp a language repo from the template (see `ctcforge.templates`).

The answers that made the repo are recorded in `.ctcforge-answers.yml` with the template
version and a sha256 of every stamped file, so `ctcforge card` can rebuild the card and
`ctcforge update` (or `new --force` over the repo) can merge a newer template into it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ctcforge.answers import ANSWERS_FILE, Answers, answers_profile, file_digest
from ctcforge.card import facts_from_answers, rebuild_card, write_card
from ctcforge.catalogue import resolve_base_model, write_model_files
from ctcforge.languages import Profile, alphabet_characters, load_profile, load_profile_file
from ctcforge.runtime.atomic import write_text_atomically
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import PROFILE_FILE
from ctcforge.spec import load_spec, spec_from_dict
from ctcforge.templates import TEMPLATE_VERSION, template_context, write_template_tree
from ctcforge.update import render_base, stamped_files, update_files
from ctcforge.runtime.vocabulary import characters_of, vocabulary_of

DEFAULT_BASE_MODEL = "facebook/wav2vec2-xls-r-300m"


def new_repo(language: str | None, output_dir: Path, *, base_model: str | None = None,
             dataset: str | None = None, dataset_config: str | None = None,
             spec_path: Path | None = None, profile_path: Path | None = None, force: bool = False,
             report: Callable[[str], None] | None = None) -> Path:
    """Stamps a repo into `output_dir`; with `force` over a repo ctcforge made, updates it
    (see `ctcforge.update`), its recorded answers filling in what the command line leaves out,
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
        answers.files = {name: file_digest(staging / name) for name in stamped_files(staging)}
        if output_dir.is_dir():
            base = None
            if previous is not None:  # the repo's old stamp, to merge the user's edits from
                base = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.base.", dir=output_dir.parent))
            try:
                if base is not None:
                    render_base(previous, base)
                update = update_files(staging, base, output_dir, previous, answers)
            finally:
                if base is not None:
                    shutil.rmtree(base, ignore_errors=True)
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
    if base.config.get("adapter_attn_dim") and not profile.iso639_3:
        raise CtcforgeError(f"{base.id} trains one language adapter per ISO 639-3 code, and the {profile.code} "
                            "profile has none: set iso639_3 in the profile (`ctcforge profile` drafts it)")
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
                   profile=given_profile.to_dict() if given_profile else None, template_version=TEMPLATE_VERSION)


def default_model_name(base_model: str, code: str) -> str:
    short = "ctcforge-tiny" if base_model == "tiny" else Path(base_model.rstrip("/")).name
    return f"{short}-{code}"


def _prepare_output_dir(output_dir: Path, force: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise CtcforgeError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise CtcforgeError(f"{output_dir} is not empty; to bring a repo ctcforge made to this version, run "
                            f"`ctcforge update {output_dir}` (your edits are merged in); to stamp over "
                            "another folder, pass --force")
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


def stamp(answers: Answers, repo: Path) -> None:
    """Writes every generated file of the repo from its answers, all but the answers record."""
    profile = answers_profile(answers)
    base = resolve_base_model(answers.base_model)
    write_template_tree(repo, template_context(answers, profile, base.family))
    write_text_atomically(repo / PROFILE_FILE,
                          json.dumps(profile.to_dict(), ensure_ascii=False, indent=2) + "\n")
    vocab = _vocabulary(answers, profile)
    write_model_files(base, vocab, repo)
    (repo / "language_model").mkdir(exist_ok=True)
    write_card(facts_from_answers(answers, profile), repo)


def _vocabulary(answers: Answers, profile: Profile) -> dict[str, int]:
    """The profile's alphabet, or, given a dataset, the letters of its training text."""
    if not answers.dataset:
        return vocabulary_of(alphabet_characters(profile))
    from ctcforge.runtime.speech_data import load_speech_dataset

    train = load_speech_dataset(answers.dataset, answers.dataset_config, answers.train_split)
    texts = train["sentence"]
    if not texts:
        raise CtcforgeError(f"{answers.dataset}: the {answers.train_split} split has no sentences")
    return vocabulary_of(characters_of(texts, profile.normalizer()))
