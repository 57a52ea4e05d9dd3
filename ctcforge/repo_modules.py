"""A stamped repo's own scripts, imported as modules, so ctcforge (and its tests) run the
very code the repo runs (eval.py's transcriber and error rates) instead of a copy that
could drift. The one importer of a repo's scripts."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

# ctcforge's own modules that `ctcforge new` copies into every repo, where the repo's
# scripts import them from the repo folder itself.
SHARED_MODULES = ("atomic.py", "text_normalizer.py", "error_rates.py", "ctc_frames.py", "speech_data.py", "starting_weights.py",
                  "transcription.py", "acoustic_engines.py", "beam_search.py", "trained_model.py",
                  "training_schedule.py", "checkpoints.py", "clip_preparation.py", "features_on_the_fly.py",
                  "training_record.py", "training_vocabulary.py", "cpu_threads.py",
                  "adapters.py")
REPO_SIBLINGS = tuple(Path(module).stem for module in SHARED_MODULES)


@contextlib.contextmanager
def repo_script_module(repo: Path, script: str):
    """`repo/script` as a module. Its sibling modules are loaded from the repo while it is
    imported; afterwards sys.modules and sys.path are as they were, so another repo's
    copies can load next. Objects made from the module keep working after the block."""
    repo = Path(repo).resolve()
    path = repo / script
    if not path.is_file():
        from ctcforge.errors import CtcforgeError

        raise CtcforgeError(f"{repo} has no {script}; stamp it again with `ctcforge new --force`")
    saved = {name: sys.modules.pop(name) for name in REPO_SIBLINGS if name in sys.modules}
    name = f"ctcforge_repo_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(repo))
    sys.modules[name] = module  # dataclasses in a script look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for loaded in (name, *REPO_SIBLINGS):
            sys.modules.pop(loaded, None)
        sys.modules.update(saved)
        sys.path.remove(str(repo))
