"""The repo's scripts start and tell the truth in --help."""

import subprocess
import sys

import pytest

from conftest import REPO

CONTRACT = {
    "eval.py": ["--model_id", "--dataset", "--config", "--split", "--chunk_length_s",
                "--stride_length_s", "--log_outputs", "--device"],
    "run_speech_recognition_ctc.py": ["--model_name_or_path", "--dataset_name", "--dataset_config_name",
                                      "--train_split_name", "--eval_split_name", "--output_dir"],
}


@pytest.mark.parametrize("script", sorted(CONTRACT))
def test_help_lists_the_contract_arguments(script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for argument in CONTRACT[script]:
        assert argument in result.stdout
