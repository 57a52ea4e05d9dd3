"""Model specs: the facts of a model card (name, data, reported results, hyperparameters)
as a YAML file, e.g. `specs/hy-AM.yaml` for a seed. `ctcforge new --spec` stamps from one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ctcforge.datafile import check_mapping, field_error, read_yaml

METRIC_TYPES = ("wer", "cer")
# Cards hold error rates as fractions (0.25 = 25%), and a spec copies them by hand from
# cards that did not always (the ja, km and as seeds gave percentages). An error rate can
# pass 1 (a hypothesis with more insertions than the reference has words), so 1 is no
# bound; but above 1.5 the model makes half again as many errors as there are reference
# words, a figure that measures nothing (zh-HK's WER of 1.90 was such a one) and no spec
# should report. Real models' percentages are nearly all above 1.5, so this catches them;
# one below (1.2 for 1.2%) cannot be told from a fraction by its size alone.
MAX_REPORTED_RATE = 1.5


@dataclass(frozen=True)
class Spec:
    language: str
    model_name: str
    base_model: str
    license: str = "apache-2.0"
    tags: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    title: str = ""
    description: str = ""
    # model-index results: [{task: {type, name}, dataset: {type, name, args...}, metrics: [...]}]
    results: list[dict] = field(default_factory=list)
    # the body's evaluation table: [{dataset: label, without_lm: {wer, cer}, with_lm: {...}}]
    evaluation: list[dict] = field(default_factory=list)
    eval_command: str = ""
    hyperparameters: dict = field(default_factory=dict)
    training_results: dict = field(default_factory=dict)  # {columns: [...], rows: [[...]]}
    framework_versions: dict = field(default_factory=dict)
    corrections: list[str] = field(default_factory=list)


def load_spec(path: str | Path) -> Spec:
    return spec_from_dict(read_yaml(Path(path), "spec"), source=str(path))


def spec_from_dict(data: object, source: str) -> Spec:
    """Validates raw spec data; each error names the file and the field."""

    fail = field_error(source)
    data = check_mapping(data, source, "spec", set(Spec.__dataclass_fields__))
    for key in ("language", "model_name", "base_model"):
        _require_line(data.get(key), key, fail)
    for key in ("license", "title", "eval_command"):
        if key in data and not isinstance(data[key], str):
            raise fail(key, "must be a string")
    for key in ("tags", "datasets", "corrections"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(key, "must be a list of non-empty strings")
    for key in ("tags", "datasets"):
        for value in data.get(key, []):
            _require_line(value, key, fail)
    for key in ("hyperparameters", "framework_versions", "training_results"):
        if not isinstance(data.get(key, {}), dict):
            raise fail(key, "must be a mapping")
    for i, result in enumerate(data.get("results", [])):
        _check_result(result, f"results[{i}]", fail)
    for i, row in enumerate(data.get("evaluation", [])):
        _check_evaluation(row, f"evaluation[{i}]", fail)
    return Spec(**data)


def _require_line(value: object, where: str, fail) -> None:
    """A one-line, non-empty string: names and ids end up as single YAML scalars."""
    if not isinstance(value, str) or not value.strip():
        raise fail(where, "required, a non-empty string")
    if "\n" in value or "\r" in value:
        raise fail(where, f"must be one line, got {value!r}")


def check_metric_value(value: object, where: str, fail) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(where, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise fail(where, f"must be a finite number, got {value!r} (NaN or infinity cannot go on a card)")


def check_reported_rate(value: object, where: str, fail) -> None:
    """A WER/CER a spec reports: a finite fraction, not a percentage (see MAX_REPORTED_RATE).
    eval.py's measurements are fractions by construction and are not held to this bound."""
    check_metric_value(value, where, fail)
    if value > MAX_REPORTED_RATE:
        raise fail(where, f"{value} looks like a percentage: cards hold fractions (0.25 = 25%); divide "
                          f"by 100 and add a line to `corrections` saying the original gave percentages")


def _check_result(result: object, where: str, fail) -> None:
    if not isinstance(result, dict) or set(result) - {"task", "dataset", "metrics"}:
        raise fail(where, "must be a mapping with task, dataset and metrics")
    task, dataset, metrics = result.get("task"), result.get("dataset"), result.get("metrics")
    if not isinstance(task, dict):
        raise fail(f"{where}.task", "required, a mapping with type and name")
    _require_line(task.get("type"), f"{where}.task.type", fail)
    if not isinstance(dataset, dict):
        raise fail(f"{where}.dataset", "required, a mapping with type, name and args")
    for key in ("type", "name"):
        _require_line(dataset.get(key), f"{where}.dataset.{key}", fail)
    for key in ("args", "config", "split"):
        if key in dataset:
            _require_line(dataset[key], f"{where}.dataset.{key}", fail)
    if not isinstance(metrics, list) or not metrics:
        raise fail(f"{where}.metrics", "required, a non-empty list")
    for j, metric in enumerate(metrics):
        at = f"{where}.metrics[{j}]"
        if not isinstance(metric, dict) or metric.get("type") not in METRIC_TYPES:
            raise fail(at, f"must be a mapping whose type is one of {', '.join(METRIC_TYPES)}")
        _require_line(metric.get("name", metric["type"]), f"{at}.name", fail)
        check_reported_rate(metric.get("value"), f"{at}.value", fail)


def _check_evaluation(row: object, where: str, fail) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("dataset"), str):
        raise fail(where, "must be a mapping with a dataset label")
    for side in ("without_lm", "with_lm"):
        figures = row.get(side, {})
        if not isinstance(figures, dict) or set(figures) - set(METRIC_TYPES):
            raise fail(f"{where}.{side}", f"must map {' / '.join(METRIC_TYPES)} to numbers")
        for metric, value in figures.items():
            check_reported_rate(value, f"{where}.{side}.{metric}", fail)
