"""The PyTorch runner: eager SpaRTAN on CPU or CUDA, with the usual speed switches.

CPU: float32 (bf16/fp16 autocast where the CPU build supports it), optional channels_last
and thread count. CUDA: the same plus optional CUDA graphs (one graph per input shape,
captured on first use) and torch.compile. GPU timing uses CUDA events around the forward
pass only, so ``infer_timed`` gives compute time and a wall clock around ``infer`` gives the
end-to-end time with host copies.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spartan_deploy.errors import UsageError
from spartan_deploy.runtime.base import Runner, RunnerInfo
from spartan_deploy.runtime.options import Device, Precision, RunnerOptions, resolve_device

_AUTOCAST_DTYPES = {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


class TorchRunner(Runner):
    """Runs an ``nn.Module`` (a SpaRTAN, or anything mapping NCHW to logits)."""

    def __init__(self, model: nn.Module, options: RunnerOptions | None = None,
                 name: str | None = None, artefact: Path | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.options = options or RunnerOptions()
        self.device = resolve_device(self.options.device)
        _check_options(self.options, self.device)
        self._source = model.eval()
        self._module: nn.Module | None = None
        self._graphs: dict[tuple[int, ...], _CapturedGraph] = {}
        self._saved_threads: int | None = None
        precision = self.options.precision.value
        label = name or f"pytorch-{self.device.value} {precision}"
        self.info = RunnerInfo(label, "torch", precision, self.device.value, artefact,
                               dict(extra or {}, **_switches(self.options)))

    def activate(self) -> None:
        if self.options.threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.options.threads)
        module = self._source
        if self.device is Device.CUDA or self.options.channels_last:
            # A copy: the caller's model stays on the CPU in its own memory format.
            module = copy.deepcopy(module).to(self._torch_device())
        if self.options.channels_last:
            _to_channels_last(module)
        if self.options.compile:
            # With CUDA graphs asked for too, let the compiler own them ("reduce-overhead").
            mode = "reduce-overhead" if self.options.cuda_graphs else None
            module = torch.compile(module, mode=mode)
        self._module = module
        super().activate()

    def deactivate(self) -> None:
        self._graphs.clear()
        self._module = None
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        if self.device is Device.CUDA:
            torch.cuda.empty_cache()
        super().deactivate()

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.infer_timed(images)[0]

    def infer_timed(self, images: np.ndarray) -> tuple[np.ndarray, float | None]:
        if self._module is None:
            raise RuntimeError("TorchRunner.infer called before activate()")
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if self.device is Device.CPU:
            with torch.inference_mode():
                return self._forward(self._prepare(x)).float().numpy(), None
        return self._infer_cuda(x)

    def _infer_cuda(self, x: torch.Tensor) -> tuple[np.ndarray, float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode():
            x = self._prepare(x.to("cuda", non_blocking=True))
            if self._use_manual_graphs():
                graph = self._graph_for(x)
                graph.static_in.copy_(x)
                start.record()
                graph.graph.replay()
                end.record()
                out = graph.static_out
            else:
                start.record()
                out = self._forward(x)
                end.record()
            logits = out.float().cpu().numpy()  # synchronises the stream
        return logits, float(start.elapsed_time(end))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _AUTOCAST_DTYPES.get(self.options.precision)
        autocast = (torch.autocast(self.device.value, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            return self._module(x)  # type: ignore[misc]

    def _use_manual_graphs(self) -> bool:
        return self.options.cuda_graphs and not self.options.compile

    def _graph_for(self, x: torch.Tensor) -> _CapturedGraph:
        key = tuple(x.shape)
        if key not in self._graphs:
            self._graphs[key] = _capture(self._forward, x)
        return self._graphs[key]

    def _torch_device(self) -> str:
        return "cuda" if self.device is Device.CUDA else "cpu"


class _CapturedGraph:
    """A CUDA graph with the static input/output tensors it reads and writes."""

    def __init__(self, graph: Any, static_in: torch.Tensor, static_out: torch.Tensor) -> None:
        self.graph, self.static_in, self.static_out = graph, static_in, static_out


def _capture(forward: Any, example: torch.Tensor) -> _CapturedGraph:
    static_in = example.clone()
    # Warm-up on a side stream first: capture must not record one-time lazy initialisation.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            forward(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = forward(static_in)
    return _CapturedGraph(graph, static_in, static_out)


def _to_channels_last(module: nn.Module) -> None:
    """4-D weights to NHWC; ``Module.to(memory_format=...)`` refuses the 5-D wave weights."""
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


def _check_options(options: RunnerOptions, device: Device) -> None:
    if options.cuda_graphs and device is not Device.CUDA:
        raise UsageError("CUDA graphs need a CUDA device; drop --cuda-graphs or use a GPU")
    if options.precision is Precision.FP16 and device is Device.CPU:
        raise UsageError("fp16 autocast is for CUDA; on CPU use --precision bf16 or fp32")


def _switches(options: RunnerOptions) -> dict[str, Any]:
    return {"channels_last": options.channels_last, "cuda_graphs": options.cuda_graphs,
            "compile": options.compile, "threads": options.threads}


def open_torch_checkpoint(path: Path, options: RunnerOptions) -> TorchRunner:
    """A runner for a checkpoint file (any format ``load_model`` reads)."""
    from spartan_deploy.model import load_model

    loaded = load_model(weights=path, trust_checkpoint=options.trust_checkpoint)
    extra = {"input_size": loaded.data_config.input_size, "data_config": loaded.data_config,
             "model": loaded.name, "checkpoint_sha256": loaded.weights_sha256}
    return TorchRunner(loaded.model, options, artefact=path, extra=extra)
