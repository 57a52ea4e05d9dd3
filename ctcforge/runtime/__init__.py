"""The code every language repo carries: what its `eval.py` and `run_speech_recognition_ctc.py`
import. `ctcforge new` copies this package, unchanged, into each repo as the folder
`ctcforge_runtime/` (`repo_files.RUNTIME_FOLDER`); the tool imports it as `ctcforge.runtime`.
Its modules import each other relatively, so the same files work under both names, and
depend on nothing of the tool outside this folder.
"""
