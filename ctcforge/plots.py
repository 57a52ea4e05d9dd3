"""PNG figures for model cards, drawn with matplotlib's file-only backend (no display
needed, so `ctcforge card` works on a headless training machine)."""

from __future__ import annotations

from pathlib import Path

from ctcforge.runtime.atomic import replacing


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curve(log_history: list[dict], path: Path, metrics: list[str]) -> Path | None:
    """Training and validation loss over steps, and the validation error rates on a second
    axis, from trainer_state.json's `log_history`. None when there is nothing to draw."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [e for e in log_history if "eval_loss" in e and "step" in e]
    if len(train) + len(evals) < 2:
        return None
    plt = _pyplot()
    figure, loss_axis = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        loss_axis.plot(*zip(*train), label="training loss", color="tab:blue")
    if evals:
        loss_axis.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], "o-",
                       label="validation loss", color="tab:orange")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("CTC loss")
    handles, labels = loss_axis.get_legend_handles_labels()
    rated = [m for m in metrics if any(f"eval_{m}" in e for e in evals)]
    if rated:
        rate_axis = loss_axis.twinx()
        for metric, style in zip(rated, ("s--", "^--")):
            points = [(e["step"], e[f"eval_{metric}"]) for e in evals if f"eval_{metric}" in e]
            rate_axis.plot(*zip(*points), style, label=f"validation {metric.upper()}")
        rate_axis.set_ylabel("error rate (fraction)")
        rate_axis.set_ylim(bottom=0)
        more_handles, more_labels = rate_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    loss_axis.legend(handles, labels, loc="upper right")
    loss_axis.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, plt, path)


def _save(figure, plt, path: Path) -> Path:
    """Write beside the target and rename, so a card never links to half a PNG."""
    try:
        with replacing(path) as temporary:
            figure.savefig(temporary, format="png")
    finally:
        plt.close(figure)
    return path
