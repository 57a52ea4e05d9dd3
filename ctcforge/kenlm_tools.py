"""kenlm's command-line tools, `lmplz` and `build_binary`, and the ARPA file between them.

The kenlm wheel holds only the Python module; `./setup.sh` compiles the two tools into the
virtualenv's bin folder, so they are looked for next to the running Python first, then on
PATH. Each tool's own progress output is turned into a progress bar, and its last lines
are kept for the error message when it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ctcforge.runtime.atomic import replacing
from ctcforge.runtime.errors import CtcforgeError

SETUP_HINT = "run ./setup.sh, which builds kenlm's lmplz and build_binary into .venv/bin"
LMPLZ_STAGES = 5  # lmplz announces "=== 1/5 Counting and sorting n-grams ===" and so on
STARS = 100  # build_binary draws a bar of 100 "*"
SPECIAL_WORDS = ("<s>", "</s>", "<unk>")
MEMORY = re.compile(r"\d+(\.\d+)?[%bKMGTPEZY]?")
ERROR_LINES = 15


def find_tool(name: str) -> Path:
    """The kenlm tool `name`: beside sys.executable (the venv), else on PATH."""
    beside_python = Path(sys.executable).parent / name
    if os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise CtcforgeError(f"kenlm's {name} is missing (not in {beside_python.parent}, not on PATH); {SETUP_HINT}")


def check_lmplz_options(order: int, prune: Sequence[int], memory: str) -> None:
    """lmplz's own rules, checked before it starts, in the user's terms."""
    if order < 1:
        raise CtcforgeError(f"--order must be 1 or more, not {order}")
    if prune:
        if len(prune) > order:
            raise CtcforgeError(f"--prune gives {len(prune)} thresholds for an order-{order} model")
        if prune[0] != 0:
            raise CtcforgeError("--prune: lmplz cannot prune unigrams, so the first threshold must be 0")
        if any(b < a for a, b in zip(prune, prune[1:])):
            raise CtcforgeError(f"--prune thresholds must not decrease: {' '.join(map(str, prune))}")
    if not MEMORY.fullmatch(memory):
        raise CtcforgeError(f"--memory {memory!r}: give a size like 10%, 500M or 2G")


def lmplz_command(corpus: Path, arpa: Path, order: int, prune: Sequence[int], memory: str,
                  temp_dir: Path) -> list[str]:
    command = [str(find_tool("lmplz")), "-o", str(order), "-S", memory, "-T", f"{temp_dir}{os.sep}",
               # Small corpora lack the counts Kneser-Ney discounts are estimated from;
               # large ones never need the fallback, so it is always safe to allow.
               "--discount_fallback",
               # A literal "<s>" in the text would otherwise stop lmplz.
               "--skip_symbols",
               "--text", str(corpus), "--arpa", str(arpa)]
    if prune:
        command += ["--prune", *map(str, prune)]
    return command


def run_lmplz(corpus: Path, arpa: Path, *, order: int, prune: Sequence[int], memory: str, temp_dir: Path,
              progress: bool) -> None:
    command = lmplz_command(corpus, arpa, order, prune, memory, temp_dir)
    run_tool(command, "lmplz", LMPLZ_STAGES, lmplz_stages, progress)


def run_build_binary(arpa: Path, binary: Path, *, progress: bool) -> None:
    run_tool([str(find_tool("build_binary")), str(arpa), str(binary)], "build_binary", STARS,
             lambda text: text.count("*"), progress)


def lmplz_stages(text: str) -> int:
    return len(re.findall(r"^=== \d+/\d+ ", text, flags=re.MULTILINE))


def run_tool(command: list[str], name: str, total: int, steps_in, progress: bool) -> None:
    """Runs a kenlm tool; its stderr drives a progress bar of `total` steps, where
    `steps_in(text)` counts the steps a piece of its output announces."""
    from tqdm.auto import tqdm

    tail: deque[str] = deque(maxlen=ERROR_LINES)
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CtcforgeError(f"kenlm's {name} at {command[0]} cannot run ({exc.strerror}); {SETUP_HINT}") from exc
    with process, tqdm(total=total, desc=name, disable=not progress, leave=False) as bar:
        for line in read_lines(process.stderr):
            tail.append(line)
            bar.update(min(steps_in(line), total - bar.n))
        process.wait()
        bar.update(total - bar.n)
    if process.returncode != 0:
        output = "\n".join(line.rstrip() for line in tail if line.strip())
        raise CtcforgeError(f"{name} failed (exit {process.returncode}):\n{output}\n"
                            f"if {name} itself is broken, {SETUP_HINT}")


def read_lines(stream) -> Iterator[str]:
    """A tool's output as it comes; a bar of stars arrives without a newline, so chunks
    are split on newlines here rather than waiting for whole lines."""
    pending = ""
    while chunk := stream.read1(4096):
        pending += chunk.decode("utf-8", errors="replace")
        *lines, pending = pending.split("\n")
        yield from (line + "\n" for line in lines)
        if "*" in pending:  # a growing bar of stars: report it now
            yield pending
            pending = ""
    if pending:
        yield pending


# ---------------------------------------------------------------------------- the ARPA file


def has_end_of_sentence_unigram(lines: Iterable[str]) -> bool:
    """True when the ARPA's 1-gram section lists `</s>` (read up to the 2-gram section)."""
    in_unigrams = False
    for line in lines:
        line = line.strip()
        if line == "\\1-grams:":
            in_unigrams = True
        elif line.startswith("\\"):
            if in_unigrams:
                return False
        elif in_unigrams and line.split("\t")[1:2] == ["</s>"]:
            return True
    return False


def with_end_of_sentence_unigram(lines: Iterable[str], log10_prob: float) -> Iterator[str]:
    """The ARPA's lines with a `</s>` unigram added first in the 1-gram section and the
    `ngram 1=` count raised by one (for an ARPA that lacks it)."""
    for line in lines:
        if line.startswith("ngram 1="):
            line = f"ngram 1={int(line.split('=')[1]) + 1}\n"
        yield line
        if line.strip() == "\\1-grams:":
            yield f"{log10_prob:.7f}\t</s>\t0\n"


def ensure_end_of_sentence_unigram(arpa: Path, log10_prob: float) -> bool:
    """Adds the `</s>` unigram that pyctcdecode scores every sentence end with, only when
    the ARPA lacks it (kenlm 0.3.0's lmplz writes it; older recipes had to add it).
    `log10_prob` is its unigram probability. Returns whether the file was changed."""
    with open(arpa, encoding="utf-8") as file:
        if has_end_of_sentence_unigram(file):
            return False
    with replacing(arpa) as fixed, open(arpa, encoding="utf-8") as source, \
            open(fixed, "w", encoding="utf-8") as target:
        target.writelines(with_end_of_sentence_unigram(source, log10_prob))
    return True


def arpa_unigram_count(arpa: Path) -> int:
    with open(arpa, encoding="utf-8") as file:
        for line in file:
            if line.startswith("ngram 1="):
                return int(line.split("=")[1])
    raise CtcforgeError(f"{arpa} has no `ngram 1=` line; lmplz wrote no ARPA header")


def arpa_words(arpa: Path) -> Iterator[str]:
    """The words of the ARPA's 1-gram section, without <s>, </s> and <unk>."""
    with open(arpa, encoding="utf-8") as file:
        for line in file:
            if line.strip() == "\\1-grams:":
                break
        for line in file:
            fields = line.rstrip("\n").split("\t")
            if line.startswith("\\"):
                return
            if len(fields) >= 2 and fields[1] not in SPECIAL_WORDS:
                yield fields[1]
