"""Imports a stamped repo's training script as a module, for tests that call its functions."""

import contextlib
import importlib.util
import sys

SCRIPT = "run_speech_recognition_ctc.py"
SIBLINGS = ("text_normalizer", "error_rates", "ctc_frames", "speech_data", "starting_weights")


@contextlib.contextmanager
def imported_script(repo, module_name="run_speech_recognition_ctc"):
    """The script as a module. It is registered in sys.modules before it runs, as its
    dataclasses look their module up there; its sibling modules are found on the repo
    folder, and are forgotten again afterwards so another repo's copies can load."""
    sys.path.insert(0, str(repo))
    spec = importlib.util.spec_from_file_location(module_name, repo / SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for name in (spec.name, *SIBLINGS):
            sys.modules.pop(name, None)
        sys.path.remove(str(repo))
