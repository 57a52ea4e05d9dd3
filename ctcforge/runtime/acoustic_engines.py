"""Where the acoustic model's forward pass runs: eager torch, ONNX Runtime, or either with
int8 weights.

Used by eval.py.
Each engine is called as the transformers model is (`engine(**inputs).logits`, the padded
features and attention mask of `transcription.Transcriber.forward`), so the Transcriber's
batching, frame counts and decoding stay one implementation whatever runs the model:

- "torch": the model itself, fp32;
- "onnxruntime": the model exported by torch's TorchScript-based exporter (opset 17, batch
  and time dynamic) and run by onnxruntime on the CPU, fp32;
- "onnxruntime-int8": that export with its MatMul weights quantised to int8 by onnxruntime's
  dynamic quantisation;
- "torch-int8": torch's dynamic quantisation of the model's Linear layers to int8.

The int8 engines give other transcripts; bench/acoustic_engines.py measures all four.
onnxruntime is imported only when an ONNX engine is asked for.
"""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import torch

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "torch-int8")
FP32_BACKENDS = ("torch", "onnxruntime")  # the ones eval.py offers: the same transcripts as torch
ONNX_OPSET = 17


def acoustic_engine(model, backend: str, example_inputs: dict):
    """`model` (a transformers CTC model in eval mode) on `backend`. The ONNX engines trace
    the model on `example_inputs`, one batch as the feature extractor pads it."""
    if backend == "torch":
        return model
    if backend == "torch-int8":
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if backend in ("onnxruntime", "onnxruntime-int8"):
        return OnnxRuntimeModel(model, example_inputs, int8=backend == "onnxruntime-int8")
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class OnnxRuntimeModel:
    """The model exported to ONNX and run by onnxruntime, called like the model."""

    def __init__(self, model, example_inputs: dict, int8: bool = False):
        import onnxruntime

        names = list(example_inputs)
        with tempfile.TemporaryDirectory(prefix="ctcforge-onnx-") as folder:
            path = os.path.join(folder, "model.onnx")
            export(model, example_inputs, path)
            if int8:
                from onnxruntime.quantization import quantize_dynamic

                quantized = os.path.join(folder, "model.int8.onnx")
                quantize_dynamic(path, quantized, op_types_to_quantize=["MatMul"])
                path = quantized
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # Read whole into the session, so the temporary folder can go.
            self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = names
        self.dtypes = {name: example_inputs[name].dtype for name in names}

    def __call__(self, **inputs) -> SimpleNamespace:
        feed = {name: inputs[name].to(self.dtypes[name]).cpu().numpy() for name in self.input_names}
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def forget_cached_lengths(model) -> None:
    """Before tracing: w2v-BERT's rotary position embedding keeps the table of the last
    sequence length it saw, and a trace that hits that cache bakes the table, of that one
    length, into the graph as a constant (a longer clip then fails in onnxruntime)."""
    for module in model.modules():
        if getattr(module, "cached_sequence_length", None) is not None:
            module.cached_sequence_length = None


def export(model, example_inputs: dict, path: str) -> None:
    """The model's forward pass from its padded inputs to logits, as ONNX. The exporter sets
    the training mode from the module's, so the model must be in eval mode."""
    model.eval()
    forget_cached_lengths(model)
    names = list(example_inputs)
    dynamic = {name: {0: "batch", 1: "time"} for name in names}

    class Logits(torch.nn.Module):  # keyword inputs in the order of `names`, logits out
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *values):
            return self.model(**dict(zip(names, values))).logits

    with torch.no_grad():
        torch.onnx.export(Logits().eval(), tuple(example_inputs[name] for name in names), path, dynamo=False,
                          opset_version=ONNX_OPSET, input_names=names, output_names=["logits"],
                          dynamic_axes={**dynamic, "logits": {0: "batch", 1: "frames"}})
