"""Reading the project's YAML data files (profiles, specs) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml

from ctcforge.runtime.errors import CtcforgeError

FieldError = Callable[[str, str], CtcforgeError]


def read_yaml(path: Path, kind: str) -> object:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CtcforgeError(f"{path}: cannot read {kind}: {exc}".replace("\n", " ")) from exc


def field_error(source: str) -> FieldError:
    """`fail(field, problem)` makes the error for one field of the file `source`."""

    def fail(where: str, problem: str) -> CtcforgeError:
        return CtcforgeError(f"{source}: field {where!r}: {problem}")

    return fail


def check_mapping(data: object, source: str, kind: str, known: set[str]) -> dict:
    """The file holds a mapping whose keys are all known fields."""
    if not isinstance(data, dict):
        raise CtcforgeError(f"{source}: a {kind} must be a mapping of fields")
    for key in data:
        if key not in known:
            raise field_error(source)(key, f"unknown field (known: {', '.join(sorted(known))})")
    return data
