"""ctcforge's one way of writing a file: to a temporary file beside it, then one rename.

Used by eval.py and the training script for their results, records and vocabulary.

A reader (the Hub, pyctcdecode, a card linking a PNG, a second `ctcforge` run) sees the
old file or the new one, never half of one, and a failure part way leaves the old file as
it was. The temporary file is in the target's own folder because a rename is atomic only
within one file system.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, beside: Path | None = None) -> Iterator[Path]:
    """A temporary path beside `path`, for code (or another tool: matplotlib, a subprocess)
    to write; when the block ends without an error it replaces `path`, else it is removed.
    `beside` puts the temporary file in another folder of the same file system instead,
    for a folder whose contents are a contract (a language_model/ of exactly 3 files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=beside or path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp makes the file private; the result should have the mode an ordinary write gives.
        temporary.chmod(_mode_of(path))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> Path:
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    with replacing(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def _mode_of(path: Path) -> int:
    """The mode `path` has now, or the one `open()` would give a new file under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
