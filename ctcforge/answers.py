"""The answers record: what `ctcforge new` was asked, kept in the repo so it can be rebuilt."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ctcforge import __version__
from ctcforge.languages import Profile, load_profile, profile_from_dict
from ctcforge.runtime.atomic import write_text_atomically
from ctcforge.runtime.errors import CtcforgeError

ANSWERS_FILE = ".ctcforge-answers.yml"


@dataclass
class Answers:
    """What `ctcforge new` was asked; enough to stamp the same repo again."""

    language: str
    base_model: str
    model_name: str
    dataset: str | None = None
    dataset_config: str | None = None
    train_split: str = "train"
    spec: dict | None = None
    # The profile itself when it came from a file (`ctcforge new --profile FILE`, a language
    # ctcforge does not ship), so the repo can be stamped again without that file.
    profile: dict | None = None
    ctcforge_version: str = __version__
    # The template version stamped (`ctcforge.templates.TEMPLATE_VERSION`); answers written
    # before it was recorded come from version 1, the flat layout.
    template_version: int = 1
    # sha256 of each file as ctcforge stamped it (path relative to the repo), so that
    # `ctcforge update` can tell a file nobody touched (replaced) from one a person edited (merged).
    files: dict[str, str] = field(default_factory=dict)

    def save(self, repo: Path) -> None:
        header = "# Written by `ctcforge new`; `ctcforge card` and `ctcforge update` read it.\n"
        text = yaml.safe_dump(asdict(self), allow_unicode=True, sort_keys=False)
        write_text_atomically(repo / ANSWERS_FILE, header + text)

    @classmethod
    def load(cls, repo: Path) -> "Answers":
        path = repo / ANSWERS_FILE
        if not path.is_file():
            raise CtcforgeError(f"{repo} has no {ANSWERS_FILE}; is it a repo made by `ctcforge new`?")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        try:
            return cls(**data)
        except TypeError as exc:
            raise CtcforgeError(f"{path}: {exc}") from exc


def answers_profile(answers: Answers) -> Profile:
    """The language profile the repo was stamped from: the recorded one, else ctcforge's own."""
    if answers.profile is not None:
        return profile_from_dict(dict(answers.profile), source=f"{ANSWERS_FILE} (profile)")
    return load_profile(answers.language)


def file_digest(path: Path) -> str:
    """The sha256 the answers record keeps for a stamped file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
