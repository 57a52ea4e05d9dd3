"""`ctcforge export`: the repo's acoustic model as ONNX, for runtimes outside Python and
transformers (sherpa-onnx, onnx-asr, onnxruntime in a server or on a phone).

What lands in the repo's `onnx/` folder:

- `model.onnx`: mono 16-bit-range float samples in [-1, 1] at the model's sampling rate,
  shape (batch, samples), to CTC logits (batch, frames, labels). The feature extractor's
  work is inside the graph (`front_ends.py`: a raw-waveform wav2vec2's zero-mean unit-variance
  normalisation, or w2v-BERT's log-mel filterbank with its per-bin normalisation), so a
  runtime feeds audio and nothing else, the way sherpa-onnx runs wav2vec2-style CTC models
  (`OfflineRecognizer.from_omnilingual_asr_ctc`: one input, one output whose last axis, the
  label count, is fixed). Batch and time are dynamic; the clips of one batch share a length,
  as the graph has no padding mask;
- `model.int8.onnx` with `--int8`: the same with its MatMul weights quantised to int8
  (onnxruntime's dynamic quantisation), which changes transcripts; its CER against fp32's
  on the repo's test split is printed;
- `tokens.txt`: `symbol id` per output label, the blank (padding token) as `<blk>` and the
  word delimiter as `▁` (U+2581), which sherpa-onnx and onnx-asr turn into spaces;
- `export.json`: the input's sampling rate and layout, the labels' ids, the frame rate, the
  opset, and the largest logit difference the check below found.

Every export is checked before it is moved into place: the ONNX model on onnxruntime and the
torch model on the feature extractor's own features (what `pipeline()` feeds it) must give
logits within LOGIT_TOLERANCE on a few test clips (synthetic signals when the repo has no
test split) and on a batch of two; an export outside it is refused and nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctcforge.runtime.error_rates import error_rates
from ctcforge.runtime.errors import CtcforgeError
from ctcforge.runtime import adapters
from ctcforge.runtime.repo_files import trained_model_folder

EXPORT_DIR = "onnx"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
TOKENS_FILE = "tokens.txt"
SETTINGS_FILE = "export.json"
EXPORT_FILES = (MODEL_FILE, INT8_MODEL_FILE, TOKENS_FILE, SETTINGS_FILE)
OPSET = 17
BLANK_SYMBOL = "<blk>"
DELIMITER_SYMBOL = "\u2581"
# The largest difference allowed between the ONNX model's logits and torch's, as a share of
# the largest logit magnitude. float32 arithmetic in another order (onnxruntime's fused
# kernels; the log-mel filterbank in float32 where the extractor uses float64) moves logits by
# about 1e-5 of that; a wrong graph (a dropped normalisation, a shifted frame) moves them by
# more than 1e-1.
LOGIT_TOLERANCE = 1e-3
CHECK_CLIPS = 8  # test clips the export is checked on (and int8 scored on, all of the split)
CHECK_SECONDS = (1.0, 2.37, 4.1)  # synthetic signals, when the repo has no test split


@dataclass(frozen=True)
class Export:
    folder: Path
    largest_difference: float  # max |onnx - torch| / max |torch logit| over the check clips
    checked_clips: int
    int8_cer_change: float | None = None  # int8 CER minus fp32 CER on the test split
    int8_clips: int = 0


def export_repo(repo: Path, *, int8: bool = False, log=print) -> Export:
    """Writes `repo/onnx/` (see the module's docstring); returns what was checked."""
    from transformers import AutoFeatureExtractor

    from ctcforge.waveform_model import waveform_model

    repo = Path(repo).resolve()
    # The model eval.py scores: its weights where eval.py finds them, and for a model with
    # language adapters the repo's language's, not whichever adapter was trained last.
    folder = trained_model_folder(str(repo), str(repo))
    feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
    language = adapters.inference_language(folder, None, adapters.profile_language(str(repo)))
    model, tokenizer = adapters.load_ctc_model(folder, language)
    model = model.eval()
    tokens = tokens_text(tokenizer, model.config.vocab_size)
    wrapped = waveform_model(model, feature_extractor)

    cache = repo / ".ctcforge-cache"
    cache.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="onnx-", dir=cache))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # the mode a folder made by mkdir gets, not mkdtemp's private one
    try:
        clips = check_clips(repo, feature_extractor.sampling_rate, log)
        log(f"exporting {folder}" + (f" with its {language} adapter" if language else "") + f" to ONNX (opset {OPSET})")
        export_onnx(wrapped, staging / MODEL_FILE, clips[0])
        difference = largest_difference(staging / MODEL_FILE, model, feature_extractor, clips)
        if not difference <= LOGIT_TOLERANCE:
            raise CtcforgeError(f"the ONNX model's logits differ from torch's by {difference:.2e} of the largest "
                                f"logit (allowed: {LOGIT_TOLERANCE:.0e}); nothing was written")
        log(f"checked on {len(clips)} clips and a batch of 2: logits within {difference:.1e} of torch's "
            f"(allowed {LOGIT_TOLERANCE:.0e})")
        result = Export(repo / EXPORT_DIR, difference, len(clips))
        if int8:
            result = quantize(staging, repo, tokenizer, result, log)
        (staging / TOKENS_FILE).write_text(tokens, encoding="utf-8")
        settings = {**export_settings(model, feature_extractor, tokenizer, difference), "language": language}
        (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        replace_folder(staging, repo / EXPORT_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {repo / EXPORT_DIR}/: " + ", ".join(sorted(p.name for p in (repo / EXPORT_DIR).iterdir())))
    return result


def tokens_text(tokenizer, vocab_size: int) -> str:
    """tokens.txt: `symbol id` a line for every output id, the blank as <blk> and the word
    delimiter as ▁. A symbol with white space in it could not be read back (the runtimes
    split the line on it), so it is refused."""
    from ctcforge.runtime.beam_search import ctc_labels

    labels = ctc_labels(tokenizer, vocab_size, "tokens.txt")
    symbols = [BLANK_SYMBOL if label == "" else DELIMITER_SYMBOL if label == " " else label for label in labels]
    spaced = [symbol for symbol in symbols if not symbol or any(c.isspace() for c in symbol)]
    if spaced:
        raise CtcforgeError(f"labels {spaced[:3]} hold white space, which tokens.txt cannot hold; "
                            "rename them in vocab.json before training")
    return "".join(f"{symbol} {index}\n" for index, symbol in enumerate(symbols))


def export_onnx(wrapped, path: Path, example: np.ndarray) -> None:
    """torch's TorchScript-based exporter, which traces the HF model as it runs in eval mode
    (the exporter sets training mode from the module's, so eval() comes first)."""
    import torch

    from ctcforge.runtime.acoustic_engines import forget_cached_lengths

    wrapped.eval()
    forget_cached_lengths(wrapped)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(wrapped, (torch.from_numpy(example)[None],), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["waveform"], output_names=["logits"],
                          dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "logits": {0: "batch", 1: "frames"}})


def onnx_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # the quantised graph's shape-inference notes are not for the user
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def largest_difference(path: Path, model, feature_extractor, clips: list[np.ndarray]) -> float:
    """max |ONNX - torch| over the clips, each alone and the first two cut to one length and
    run as a batch, as a share of the largest torch logit."""
    session = onnx_session(path)
    same_length = min(len(clips[0]), len(clips[1])) if len(clips) > 1 else len(clips[0])
    cases = [clip[None] for clip in clips] + [np.stack([clip[:same_length] for clip in clips[:2]])]
    worst = 0.0
    for batch in cases:
        expected = torch_logits(model, feature_extractor, batch)
        (actual,) = session.run(["logits"], {"waveform": batch})
        if actual.shape != expected.shape:
            raise CtcforgeError(f"the ONNX model gives logits of shape {actual.shape} where torch gives "
                                f"{expected.shape}; nothing was written")
        worst = max(worst, float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-6)))
    return worst


def torch_logits(model, feature_extractor, batch: np.ndarray) -> np.ndarray:
    """The torch model's logits on the feature extractor's features, as pipeline() makes them."""
    import torch

    inputs = feature_extractor(list(batch), sampling_rate=feature_extractor.sampling_rate, return_tensors="pt",
                               return_attention_mask=True)
    with torch.inference_mode():
        return model(**inputs).logits.numpy()


def check_clips(repo: Path, sampling_rate: int, log) -> list[np.ndarray]:
    """Up to CHECK_CLIPS clips of the repo's test split, or synthetic signals without one."""
    clips = [audio for _, audio in clips_of_test_split(repo, sampling_rate, CHECK_CLIPS, log)]
    if clips:
        return clips
    rng = np.random.default_rng(0)
    signals = []
    for seconds in CHECK_SECONDS:
        time = np.arange(int(seconds * sampling_rate)) / sampling_rate
        chirp = np.sin(2 * np.pi * (200 + 400 * time) * time) * 0.3
        signals.append((chirp + rng.normal(0, 0.05, time.size)).astype(np.float32))
    log("the repo records no test split; checking on synthetic signals")
    return signals


def clips_of_test_split(repo: Path, sampling_rate: int, limit: int | None, log) -> list[tuple[str, np.ndarray]]:
    """(normalised reference, audio) of the test split the repo records in its answers, or
    none when it records no dataset or the dataset cannot be read here."""
    from ctcforge.answers import Answers
    from ctcforge.lm_text import SENTENCE_COLUMN, repo_normalizer
    from ctcforge.lm_tuning import readable_clips
    from ctcforge.runtime.speech_data import load_speech_dataset

    try:
        answers = Answers.load(repo)
    except CtcforgeError:
        return []
    if not answers.dataset:
        return []
    normalizer = repo_normalizer(repo)
    config = answers.dataset_config or normalizer.profile.get("code")
    try:
        rows = load_speech_dataset(answers.dataset, config, "test", text_column=SENTENCE_COLUMN,
                                   sampling_rate=sampling_rate)
    except CtcforgeError as exc:
        log(f"the repo's test split cannot be read ({exc}); checking without it")
        return []
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    clips, skipped = readable_clips(rows, SENTENCE_COLUMN, normalizer, sampling_rate)
    if skipped:
        log(f"skipped {sum(skipped.values())} test clips: "
            + ", ".join(f"{count} {reason}" for reason, count in skipped.most_common()))
    return clips


def quantize(staging: Path, repo: Path, tokenizer, result: Export, log) -> Export:
    """model.int8.onnx: MatMul weights in int8 (the other ops stay fp32, as quantising the
    convolutions too cost far more accuracy), and its CER change against fp32 on the test split."""
    from onnxruntime.quantization import quantize_dynamic

    from ctcforge.lm_text import repo_normalizer

    root = logging.getLogger()
    level = root.level
    # The quantiser warns through the root logger about every float64 front-end MatMul it
    # leaves alone (rightly: only the model's float32 ones are quantised), and suggests a
    # pre-processing step; neither is for the user.
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(staging / MODEL_FILE, staging / INT8_MODEL_FILE, op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)
    sampling_rate = json.loads((repo / "preprocessor_config.json").read_text(encoding="utf-8"))["sampling_rate"]
    clips = clips_of_test_split(repo, sampling_rate, None, log)
    if not clips:
        log("wrote the int8 model; the repo records no readable test split, so its CER change is not known")
        return result
    normalizer = repo_normalizer(repo)
    references = [reference for reference, _ in clips]
    rates = {}
    for name in (MODEL_FILE, INT8_MODEL_FILE):
        session = onnx_session(staging / name)
        texts = [normalizer(greedy_text(session.run(["logits"], {"waveform": audio[None]})[0][0], tokenizer))
                 for _, audio in clips]
        rates[name] = error_rates(references, texts, normalizer)[1]
    change = rates[INT8_MODEL_FILE] - rates[MODEL_FILE]
    log(f"int8: CER {rates[INT8_MODEL_FILE]:.4f} against fp32's {rates[MODEL_FILE]:.4f} on {len(clips)} test "
        f"clips ({change:+.4f})")
    return Export(result.folder, result.largest_difference, result.checked_clips, change, len(clips))


def greedy_text(logits: np.ndarray, tokenizer) -> str:
    """The pipeline's greedy decoding of one clip's (frames, labels) logits."""
    return tokenizer.decode(logits.argmax(-1).tolist(), skip_special_tokens=False)


def export_settings(model, feature_extractor, tokenizer, difference: float) -> dict:
    import onnxruntime
    import torch

    samples_per_frame = getattr(model.config, "inputs_to_logits_ratio", None)
    if type(feature_extractor).__name__ == "SeamlessM4TFeatureExtractor":
        samples_per_frame = 160 * feature_extractor.stride  # 10 ms filterbank frames, stacked
    vocab = tokenizer.get_vocab()
    return {
        "input": {"name": "waveform", "shape": ["batch", "samples"], "dtype": "float32",
                  "sampling_rate": feature_extractor.sampling_rate, "channels": 1, "range": [-1.0, 1.0],
                  "feature_extractor": type(feature_extractor).__name__, "features": "inside the graph"},
        "output": {"name": "logits", "shape": ["batch", "frames", model.config.vocab_size],
                   "frames_per_second": feature_extractor.sampling_rate / samples_per_frame},
        "blank_id": vocab[tokenizer.pad_token], "word_delimiter_id": vocab.get(tokenizer.word_delimiter_token),
        "tokens": TOKENS_FILE, "opset": OPSET, "logit_tolerance": LOGIT_TOLERANCE,
        "largest_logit_difference": difference, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
    }


def replace_folder(staging: Path, target: Path) -> None:
    """The staged folder in place of `target` (one rename; the old folder goes just before)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
