"""eval.py's start-up: the wall time of a one-clip run and what its imports cost
(`python -X importtime`), for two repo folders holding two versions of the shipped scripts
(before and after a change) on the same model, LM and clip, interleaved. Run by hand.

    .venv/bin/python bench/startup.py --before /tmp/old-repo --after /tmp/new-repo --dataset /tmp/cv --repeats 3

Both folders need the same weights and, for the lm rows, the same alphabet.json and
language_model/. Import time is the sum over the modules imported at the top level (so
each module is counted once), and the packages named below are listed alone.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import LANGUAGE, load_average

NAMED = ("torch", "transformers", "datasets", "pyctcdecode", "kenlm", "ctc_beam_decoder")
TOP_LEVEL = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$")


def one_clip_run(repo: Path, dataset: Path, decoder: str, out: Path) -> tuple[float, dict[str, float]]:
    """Seconds from process start to exit, and seconds of import per top-level module."""
    command = [sys.executable, "-X", "importtime", "eval.py", "--model_id", "./", "--dataset", str(dataset),
               "--config", LANGUAGE, "--split", "test", "--max_samples", "1", "--decoder", decoder,
               "--output_dir", str(out)]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    imports = {}
    for line in result.stderr.splitlines():
        match = TOP_LEVEL.match(line)
        if match:  # no indentation before the name: imported by eval.py or the interpreter itself
            imports[match[2]] = imports.get(match[2], 0.0) + int(match[1]) / 1e6
    return wall, imports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--decoders", nargs="+", default=["greedy", "lm"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ctcforge-startup-bench"))
    args = parser.parse_args()
    print(f"load {load_average()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    walls, imports = {}, {}
    for repeat in range(1, args.repeats + 1):
        for decoder in args.decoders:
            for version, repo in (("before", args.before), ("after", args.after)):
                wall, modules = one_clip_run(repo, args.dataset, decoder, args.out / f"{version}-{decoder}")
                walls.setdefault((version, decoder), []).append(wall)
                imports.setdefault((version, decoder), []).append(modules)
                named = ", ".join(f"{name} {modules[name]:.2f}" for name in NAMED if name in modules)
                print(f"#{repeat} {decoder:<6} {version:<6} wall {wall:6.2f} s, imports {sum(modules.values()):6.2f} s "
                      f"({named}); load {load_average()}", flush=True)
    print("\nmedians:")
    for (version, decoder), values in walls.items():
        totals = [sum(modules.values()) for modules in imports[version, decoder]]
        print(f"  {decoder:<6} {version:<6} one-clip run {statistics.median(values):6.2f} s, "
              f"imports {statistics.median(totals):6.2f} s")


if __name__ == "__main__":
    main()
