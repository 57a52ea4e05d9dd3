"""What the benchmarks share: the load average printed beside each figure, and a `tiny`
repo stamped from a release and trained by its own script at the demo's learning settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

LANGUAGE = "hy-AM"
# The demo's batch size, learning rate and warm-up share; no checkpoints, no evaluation.
TRAINING_ARGS = ["--per_device_train_batch_size", "16", "--learning_rate", "2e-3", "--warmup_steps", "0.1",
                 "--do_train", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
                 "--save_strategy", "no", "--dataloader_num_workers", "0", "--seed", "0"]


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, which include the benchmark's own processes."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def train_tiny(repo: Path, release: Path, steps: int, log_name: str | None = "train.log") -> None:
    """Stamps a `tiny` repo with its vocabulary from `release` and trains it `steps` steps;
    the training script's output goes to `log_name` in the repo, or nowhere with None."""
    from ctcforge.new import new_repo

    shutil.rmtree(repo, ignore_errors=True)
    new_repo(LANGUAGE, repo, base_model="tiny", dataset=str(release))
    command = [sys.executable, "run_speech_recognition_ctc.py", "--model_name_or_path", "./",
               "--dataset_name", str(release), "--dataset_config_name", LANGUAGE, "--output_dir", "./",
               "--max_steps", str(steps), *TRAINING_ARGS]
    with open(repo / log_name if log_name else os.devnull, "w") as output:
        subprocess.run(command, cwd=repo, stdout=output, stderr=subprocess.STDOUT, check=True)
