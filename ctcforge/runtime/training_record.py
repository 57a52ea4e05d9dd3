"""What a training run leaves for the model card: its hyperparameters and its record.

This file is copied unchanged into every generated repo, where run_speech_recognition_ctc.py
imports it. `ctcforge card` reads training_hyperparameters.json (the settings a card
lists, in the order Trainer-made cards use) and training_run.json (the command really
run, where its model went, what it started from, the framework versions); `ctcforge
push` and eval.py read the record to find a model trained into another output_dir.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import shlex
import sys
from pathlib import Path

import datasets
import torch
import transformers

from . import starting_weights
from . import training_schedule
from .atomic import write_text_atomically
from .trained_model import TRAINING_RUN_FILE  # eval.py reads the record through trained_model.py

HYPERPARAMETERS_FILE = "training_hyperparameters.json"


def card_hyperparameters(
    args, speed_perturbation: list[float] | None = None, steps_trained: int | None = None
) -> dict:
    """The hyperparameter list a model card shows, in the order Trainer-made cards use;
    `ctcforge card` reads it from training_hyperparameters.json."""
    world_size = max(args.world_size, 1)
    values = {
        "learning_rate": args.learning_rate,
        "train_batch_size": args.per_device_train_batch_size,
        "eval_batch_size": args.per_device_eval_batch_size,
        "seed": args.seed,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size,
        "optimizer": f"{getattr(args.optim, 'value', args.optim)} with betas=({args.adam_beta1},{args.adam_beta2}) and epsilon={args.adam_epsilon}",
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
    }
    if args.lr_scheduler_type == training_schedule.TRISTAGE:
        # Its warm-up is the first ratio; --warmup_steps does not apply.
        values["lr_scheduler_ratios"] = list(args.lr_scheduler_ratios)
        # Shown only when not fairseq's defaults, which is what a tristage card implies.
        if args.init_lr_scale != training_schedule.TRISTAGE_INIT_LR_SCALE:
            values["lr_scheduler_init_lr_scale"] = args.init_lr_scale
        if args.final_lr_scale != training_schedule.TRISTAGE_FINAL_LR_SCALE:
            values["lr_scheduler_final_lr_scale"] = args.final_lr_scale
    elif args.warmup_steps:
        values["lr_scheduler_warmup_steps"] = args.warmup_steps
    if args.max_train_minutes is not None:
        values["training_time_budget_minutes"] = args.max_train_minutes
        values["training_steps"] = steps_trained
    elif args.max_steps > 0:
        values["training_steps"] = args.max_steps
    else:
        values["num_epochs"] = args.num_train_epochs
    if args.fp16 or args.bf16:
        values["mixed_precision_training"] = "Native AMP" if args.fp16 else "bf16"
    if speed_perturbation:
        values["speed_perturbation"] = list(speed_perturbation)
    return values


def training_run_record(start: starting_weights.StartingPoint, output_dir: Path, steps: int,
                        adapter: dict | None = None) -> dict:
    """What `ctcforge card` shows as the command that was really run, and where its model is;
    for an adapter fine-tune, the adapter saved (`adapters.adapter_record`)."""
    versions = {"Transformers": transformers.__version__, "Pytorch": torch.__version__,
                "Datasets": datasets.__version__}
    try:
        versions["Tokenizers"] = importlib.metadata.version("tokenizers")
    except importlib.metadata.PackageNotFoundError:
        pass
    return {
        "command": shlex.join(["python", Path(sys.argv[0]).name, *sys.argv[1:]]),
        "output_dir": str(output_dir.resolve()),
        "started_from": start.description,
        "steps": steps,
        "framework_versions": versions,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **({"adapter": adapter} if adapter else {}),
    }


def write_json(path: Path, data: dict) -> None:
    """Written aside and renamed into place, so a reader never sees half a file."""
    write_text_atomically(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
