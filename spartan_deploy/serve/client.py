"""Talking to a running Triton: loopback URLs only, one client factory per protocol, model
metadata, and the statistics endpoint read as "which batch sizes did the server run".
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

import numpy as np

from spartan_deploy.errors import UsageError
from spartan_deploy.serve.choices import Protocol
from spartan_deploy.serve.errors import ServeError, missing_client

_LOOPBACK_NAMES = ("localhost",)


def loopback_url(url: str) -> str:
    """``host:port`` from ``[http://]host:port``; anything but a loopback host is refused."""
    text = url.strip()
    for scheme in ("http://", "grpc://"):
        text = text.removeprefix(scheme)
    host, _, port = text.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"URL {url!r} is not host:port (e.g. 127.0.0.1:8000)")
    if host not in _LOOPBACK_NAMES:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise UsageError(f"URL {url!r} is not a loopback address; this toolkit only talks "
                             "to servers on 127.0.0.1 / localhost / ::1")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def sync_client(url: str, protocol: Protocol, timeout_s: float = 30.0) -> Any:
    try:
        if protocol is Protocol.HTTP:
            import tritonclient.http as http

            return http.InferenceServerClient(url, connection_timeout=timeout_s,
                                              network_timeout=timeout_s)
        import tritonclient.grpc as grpc

        return grpc.InferenceServerClient(url)
    except ImportError as err:
        raise missing_client(err) from None


def aio_client(url: str, protocol: Protocol, connections: int, timeout_s: float) -> Any:
    if protocol is Protocol.HTTP:
        import tritonclient.http.aio as http_aio

        # One connection more than workers: the statistics reads never wait for a worker.
        return http_aio.InferenceServerClient(url, conn_limit=connections + 1,
                                              conn_timeout=timeout_s)
    import tritonclient.grpc.aio as grpc_aio

    return grpc_aio.InferenceServerClient(url)


def client_module(protocol: Protocol) -> Any:
    """``tritonclient.http`` or ``tritonclient.grpc`` (InferInput, InferRequestedOutput)."""
    if protocol is Protocol.HTTP:
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """A served model's first input and output, and its max batch size."""

    input: str
    input_dims: tuple[int, ...]  # without the batch axis
    datatype: str
    output: str
    max_batch_size: int


def model_io(client: Any, model: str, protocol: Protocol, url: str) -> ModelIO:
    """What the server says model ``model`` takes; one-line errors when it cannot say."""
    from tritonclient.utils import InferenceServerException

    try:
        ready = client.is_model_ready(model)
        if not ready:
            raise ServeError(f"model {model!r} is not ready on {url}; check the name (spartan "
                             "serve prints the loaded models)")
        config = client.get_model_config(model, **_as_json(protocol))
    except InferenceServerException as err:
        raise ServeError(f"no answer about model {model!r} from Triton at {url} "
                         f"({err.message()}); start one with spartan serve REPO") from None
    except OSError as err:
        raise ServeError(f"no Triton server answers at {url} ({err}); start one with spartan "
                         "serve REPO") from None
    config = config.get("config", config)
    first_in, first_out = config["input"][0], config["output"][0]
    return ModelIO(first_in["name"], tuple(int(d) for d in first_in["dims"]),
                   str(first_in["data_type"]).removeprefix("TYPE_"), first_out["name"],
                   int(config.get("max_batch_size", 0)))


def _as_json(protocol: Protocol) -> dict[str, Any]:
    return {"as_json": True} if protocol is Protocol.GRPC else {}


@dataclasses.dataclass(frozen=True)
class ServerCounts:
    """Triton's cumulative counters for one model: requests (inferences), model runs
    (executions) and runs per batch size."""

    inferences: int
    executions: int
    batches: Mapping[int, int]

    def minus(self, before: ServerCounts) -> ServerCounts:
        sizes = {b: n - before.batches.get(b, 0) for b, n in self.batches.items()}
        return ServerCounts(self.inferences - before.inferences,
                            self.executions - before.executions,
                            {b: n for b, n in sorted(sizes.items()) if n > 0})

    @property
    def mean_batch(self) -> float | None:
        return self.inferences / self.executions if self.executions else None

    def to_dict(self) -> dict[str, Any]:
        return {"inferences": self.inferences, "executions": self.executions,
                "mean_batch": self.mean_batch,
                "executions_per_batch_size": {str(k): v for k, v in self.batches.items()}}


def server_counts(client: Any, model: str, protocol: Protocol) -> ServerCounts:
    """The statistics endpoint of a sync client, as :class:`ServerCounts`."""
    return parse_counts(client.get_inference_statistics(model, **_as_json(protocol)), model)


async def server_counts_async(client: Any, model: str, protocol: Protocol) -> ServerCounts:
    """The same through an asyncio client (read while the load runs)."""
    return parse_counts(await client.get_inference_statistics(model, **_as_json(protocol)),
                        model)


def parse_counts(stats: Mapping[str, Any], model: str) -> ServerCounts:
    """Statistics reduced to :class:`ServerCounts` (gRPC JSON holds the 64-bit counters as
    strings, hence the int())."""
    entry = next((s for s in stats.get("model_stats", []) if s.get("name") == model), None)
    if entry is None:
        return ServerCounts(0, 0, {})
    batches = {int(b["batch_size"]): int(b.get("compute_infer", {}).get("count", 0))
               for b in entry.get("batch_stats", [])}
    return ServerCounts(int(entry.get("inference_count", 0)),
                        int(entry.get("execution_count", 0)), batches)


def infer_once(client: Any, protocol: Protocol, model: str, io: ModelIO,
               images: np.ndarray) -> np.ndarray:
    """Logits for ``images`` from the server (one request)."""
    module = client_module(protocol)
    tensor = module.InferInput(io.input, list(images.shape), io.datatype)
    tensor.set_data_from_numpy(images.astype(_NUMPY[io.datatype], copy=False))
    result = client.infer(model, [tensor], outputs=[module.InferRequestedOutput(io.output)])
    return np.asarray(result.as_numpy(io.output), dtype=np.float32)


_NUMPY = {"FP32": np.float32, "FP16": np.float16}


def numpy_type(datatype: str) -> Any:
    if datatype not in _NUMPY:
        raise UsageError(f"the model takes {datatype} input; spartan loadtest drives models "
                         "that take float images (not an ensemble taking encoded images)")
    return _NUMPY[datatype]
