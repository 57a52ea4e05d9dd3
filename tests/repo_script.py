"""The stamped repo's training script, imported as a module for tests that call its
functions, through ctcforge's one importer of a repo's scripts."""

from ctcforge.repo_modules import repo_script_module

SCRIPT = "run_speech_recognition_ctc.py"


def imported_script(repo):
    return repo_script_module(repo, SCRIPT)
