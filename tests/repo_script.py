"""A stamped repo's scripts imported as modules, for tests (and benchmarks) that call their
functions: the very code the repo runs, with the repo's own copy of the runtime package.

The tool never does this; it imports `ctcforge.runtime` itself. Only here, outside the
tool, is a repo's root put on `sys.path`, and only while its script is imported."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from pathlib import Path

from ctcforge.runtime.repo_files import RUNTIME_FOLDER

SCRIPT = "run_speech_recognition_ctc.py"


def _runtime_modules() -> list[str]:
    return [name for name in sys.modules if name == RUNTIME_FOLDER or name.startswith(RUNTIME_FOLDER + ".")]


@contextlib.contextmanager
def repo_script_module(repo: Path, script: str):
    """`repo/script` as a module, its `ctcforge_runtime` package loaded from the repo while
    it is imported (and kept as `module.runtime`); afterwards sys.modules and sys.path are as
    they were, so another repo's copy can load next. Objects made from the module keep
    working after the block."""
    repo = Path(repo).resolve()
    path = repo / script
    assert path.is_file(), f"{repo} has no {script}"
    saved = {name: sys.modules.pop(name) for name in _runtime_modules()}
    name = f"ctcforge_repo_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(repo))
    sys.modules[name] = module  # dataclasses in a script look their module up here
    try:
        spec.loader.exec_module(module)
        # The repo's own runtime modules the script loaded, for tests that reach past it
        # (`module.runtime.transcription`); they stay usable after the block.
        module.runtime = types.SimpleNamespace(**{loaded.split(".", 1)[1]: sys.modules[loaded]
                                                  for loaded in _runtime_modules() if "." in loaded})
        yield module
    finally:
        for loaded in [name, *_runtime_modules()]:
            sys.modules.pop(loaded, None)
        sys.modules.update(saved)
        sys.path.remove(str(repo))


def imported_script(repo):
    return repo_script_module(repo, SCRIPT)
