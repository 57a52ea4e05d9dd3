"""The template a repo is stamped from: `repo/`, laid out like its output, and the runtime
package (`ctcforge/runtime/`), which lands in the repo as its `ctcforge_runtime/` folder.

Files ending in `.jinja` are rendered with jinja2 (StrictUndefined, so a missing answer is
an error, not an empty string) and lose the suffix; every other file is copied as it is.
TEMPLATE_VERSION counts the versions of that tree: bump it whenever a file of `repo/` or of
the runtime changes, and archive the new version (`python -m ctcforge.update --archive`),
so `ctcforge update` can render any repo's old stamp again to merge from.
"""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from pathlib import Path

import jinja2

from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime.atomic import write_bytes_atomically, write_text_atomically
from ctcforge.runtime.repo_files import RUNTIME_FOLDER

PACKAGE = Path(str(resources.files("ctcforge")))
TEMPLATE_DIR = PACKAGE / "templates" / "repo"
RUNTIME_DIR = PACKAGE / "runtime"
HISTORY_DIR = PACKAGE / "templates" / "history"
# 1: the flat layout, runtime modules at the repo's root (before the version was recorded).
# 2: the runtime as one package folder, ctcforge_runtime/.
TEMPLATE_VERSION = 2


def template_context(answers, profile, family: str) -> dict:
    return {"answers": asdict(answers), "profile": profile.to_dict(), "family": family}


def write_template_tree(target: Path, context: dict | None) -> None:
    """The current template into `target`, rendered with `context` (None: as it is, for
    the history archive)."""
    render_templates(TEMPLATE_DIR, target, context)
    runtime = target / RUNTIME_FOLDER
    runtime.mkdir(parents=True, exist_ok=True)
    for module in sorted(RUNTIME_DIR.glob("*.py")):
        write_bytes_atomically(runtime / module.name, module.read_bytes())


def render_templates(source: Path, target: Path, context: dict | None) -> list[Path]:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(source)),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    written = []
    for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        relative = path.relative_to(source)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jinja" and context is not None:
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
