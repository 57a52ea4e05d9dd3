"""Every file of a language repo, named once: the contract between the repo's scripts and
the tool. Each name sits beside the one function that reads it and the one that writes it
(or the module that does, where the format is that module's whole subject).
"""

from __future__ import annotations

# The runtime package's folder in a repo. Not `ctcforge`, so that running a repo's scripts
# beside an installed ctcforge can never import one in place of the other.
RUNTIME_FOLDER = "ctcforge_runtime"
# The two scripts a repo is for; the only Python files at its top level.
TRAINING_SCRIPT = "run_speech_recognition_ctc.py"
EVAL_SCRIPT = "eval.py"
