"""`ctcforge update`: bring a repo to the current template without losing anyone's work.

As copier does: the template version the repo was stamped from is rendered again with its
recorded answers (the *base*), the current version with the current answers (*theirs*), and
each file the user has (*ours*) is merged three ways with `git merge-file`:
- a file nobody edited since it was stamped (its recorded sha256) is replaced;
- an edited text file gets the template's changes merged into it, with conflict markers
  where both changed one region (counted and named, for the user to resolve);
- a file the template dropped is removed, unless the user edited it;
- under trained weights, the files that shaped them (labels, architecture) stay as they are.
The version stamped is recorded in the answers. Every version a repo may have been stamped
from is kept as `templates/history/VERSION.tar.gz` (the template tree laid out as a stamp,
its runtime at the place that version put it), so an old repo's base can be rendered
again; `python -m ctcforge.update --archive` writes the current version's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ctcforge.answers import ANSWERS_FILE, Answers, answers_profile, file_digest
from ctcforge.catalogue import resolve_base_model
from ctcforge.runtime.atomic import write_bytes_atomically
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.repo_files import CONFIG_FILE, PREPROCESSOR_FILE, TOKENIZER_FILES, has_weights
from ctcforge.templates import HISTORY_DIR, TEMPLATE_VERSION, render_templates, template_context, write_template_tree

# Files a training run's weights are shaped by: their labels (vocab.json and the tokenizer)
# and their architecture (config.json, and the feature extractor the encoder was trained on).
# Over trained weights an update never rewrites them.
WEIGHT_SHAPING_FILES = (*TOKENIZER_FILES, CONFIG_FILE, PREPROCESSOR_FILE)
# Rebuilt by their own rules, not merged: the card keeps a person's text outside its
# generated sections, and the answers record is rewritten on every stamp.
SELF_MERGING_FILES = ("README.md", ANSWERS_FILE)
# Where a file has no base to merge from (binary, or not made from the template), the
# template's version is written beside the user's.
NEW_SUFFIX = ".new"


@dataclass
class Update:
    """What an update did to each file ctcforge stamps (paths relative to the repo)."""

    updated: list[str] = field(default_factory=list)  # unedited since stamped (or new): replaced
    merged: list[str] = field(default_factory=list)  # edited: the template's changes merged in
    conflicted: list[str] = field(default_factory=list)  # edited where the template changed too
    kept: list[str] = field(default_factory=list)  # edited, no base to merge from: NAME.new beside
    removed: list[str] = field(default_factory=list)  # dropped by the template, unedited
    orphaned: list[str] = field(default_factory=list)  # dropped by the template, edited: left alone
    unchanged: list[str] = field(default_factory=list)
    weight_shaping: list[str] = field(default_factory=list)  # kept as they are, under trained weights

    def lines(self) -> list[str]:
        """One line per kind of outcome that happened, then how many files were unchanged."""
        outcomes = [("updated", "", self.updated),
                    ("merged", " you edited, with the template's changes", self.merged),
                    ("CONFLICTS in", " (both you and the template changed a region: resolve the <<<<<<< "
                                     "markers)", self.conflicted),
                    ("kept", f" you edited, ctcforge's version beside each as NAME{NEW_SUFFIX}", self.kept),
                    ("removed", " the template no longer has", self.removed),
                    ("left", " you edited that the template no longer has (delete them when done)", self.orphaned),
                    ("kept", " the trained weights were built on", self.weight_shaping)]
        return [f"{verb} {len(names)}{why}: {', '.join(names)}" for verb, why, names in outcomes if names] + [
            f"unchanged {len(self.unchanged)}"]


def render_base(answers: Answers, target: Path) -> None:
    """The template files of the version `answers` were stamped from, rendered with them."""
    version = answers.template_version
    context = template_context(answers, answers_profile(answers), resolve_base_model(answers.base_model).family)
    if version == TEMPLATE_VERSION:
        write_template_tree(target, context)
        return
    archive = HISTORY_DIR / f"{version}.tar.gz"
    if not archive.is_file():
        raise CtcforgeError(f"{ANSWERS_FILE} says template version {version}, which this ctcforge does not know "
                            f"(it knows 1 to {TEMPLATE_VERSION}): update ctcforge")
    with tempfile.TemporaryDirectory() as unpacked:
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        render_templates(Path(unpacked), target, context)


def stamped_files(folder: Path) -> list[str]:
    """The files of a stamp that an update merges, relative to `folder`."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts
                  and path.relative_to(folder).as_posix() not in SELF_MERGING_FILES)


def update_files(staging: Path, base: Path | None, repo: Path, previous: Answers | None,
                 answers: Answers) -> Update:
    """Brings `repo` to the stamp in `staging`, merging from the old stamp's files in `base`."""
    recorded = previous.files if previous else {}
    trained = has_weights(repo)
    if trained:
        _refuse_reshaping_weights(staging, repo, previous, answers)
    update = Update()
    new_files = stamped_files(staging)
    for name in new_files:
        source, target = staging / name, repo / name
        base_file = base / name if base is not None and (base / name).is_file() else None
        if target.is_file() and target.read_bytes() == source.read_bytes():
            update.unchanged.append(name)
        elif trained and name in WEIGHT_SHAPING_FILES and target.is_file():
            update.weight_shaping.append(name)
        elif not target.exists() or _unedited(target, recorded.get(name), base_file):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomically(target, source.read_bytes())
            update.updated.append(name)
        elif recorded.get(name) == file_digest(source) or (
                base_file is not None and base_file.read_bytes() == source.read_bytes()):
            update.unchanged.append(name)  # edited, over a template that did not change it
        elif base_file is not None and _is_text(target, source, base_file):
            merged, conflicts = merge_three_ways(target, base_file, source)
            write_bytes_atomically(target, merged)
            (update.conflicted if conflicts else update.merged).append(name)
        else:
            write_bytes_atomically(target.with_name(target.name + NEW_SUFFIX), source.read_bytes())
            update.kept.append(name)
    dropped = (set(recorded) | set(stamped_files(base) if base is not None else [])) - set(new_files)
    for name in sorted(dropped - set(SELF_MERGING_FILES)):
        target = repo / name
        if not target.is_file():
            continue
        if _unedited(target, recorded.get(name), base / name if base is not None else None):
            target.unlink()
            update.removed.append(name)
        else:
            update.orphaned.append(name)
    (repo / "language_model").mkdir(exist_ok=True)
    return update


def _unedited(target: Path, recorded_digest: str | None, base_file: Path | None) -> bool:
    """Whether `target` is as it was stamped: its recorded sha256, or the old stamp's bytes."""
    if recorded_digest == file_digest(target):
        return True
    return base_file is not None and base_file.is_file() and base_file.read_bytes() == target.read_bytes()


def _is_text(*paths: Path) -> bool:
    try:
        for path in paths:
            path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def merge_three_ways(ours: Path, base: Path, theirs: Path) -> tuple[bytes, int]:
    """`git merge-file` of the three: the merged text and how many regions conflict."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder) / "ours"
        shutil.copyfile(ours, work)
        try:
            done = subprocess.run(["git", "merge-file", "-L", "yours", "-L", "as stamped", "-L", "template",
                                   str(work), str(base), str(theirs)], capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise CtcforgeError("updating an edited file needs git (git merge-file): install git") from exc
        if done.returncode < 0 or done.returncode > 127:
            raise CtcforgeError(f"git merge-file failed on {ours}: {done.stderr.strip()}")
        return work.read_bytes(), done.returncode


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


def archive_current_template(path: Path | None = None) -> Path:
    """Writes the current template tree (laid out as a stamp, unrendered) as the history
    archive of TEMPLATE_VERSION: run once when the version is bumped."""
    path = path or HISTORY_DIR / f"{TEMPLATE_VERSION}.tar.gz"
    with tempfile.TemporaryDirectory() as folder:
        write_template_tree(Path(folder), None)
        with tarfile.open(path, "w:gz") as tar:
            for member in sorted(Path(folder).rglob("*")):
                if member.is_file():
                    info = tar.gettarinfo(str(member), arcname=member.relative_to(folder).as_posix())
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    with member.open("rb") as handle:
                        tar.addfile(info, handle)
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--archive"]:
        sys.exit("usage: python -m ctcforge.update --archive")
    print(archive_current_template())
