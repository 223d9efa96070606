"""The real Triton server on free loopback ports: served logits vs ONNX Runtime, the
ensemble, Triton's errors for bad requests, clean stops, and one-line startup failures."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spartan_deploy.errors import MissingDependencyError, UsageError
from spartan_deploy.evaluation import compare, logits_over
from spartan_deploy.runtime import Device, RunnerOptions, open_runner
from spartan_deploy.serve.choices import Protocol
from spartan_deploy.serve.errors import ServeError
from tests.serve.conftest import free_ports, require_module

MODEL = "tiny-spartan-fp32"


def _client(server, protocol: Protocol):
    from spartan_deploy.serve.client import sync_client

    address = server.endpoints.http if protocol is Protocol.HTTP else server.endpoints.grpc
    return sync_client(address, protocol)


def _infer(client, protocol, images, model=MODEL, output=None):
    from spartan_deploy.serve.client import client_module

    module = client_module(protocol)
    tensor = module.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    return client.infer(model, [tensor], outputs=output)


@pytest.mark.parametrize("protocol", [Protocol.HTTP, Protocol.GRPC])
def test_served_logits_match_onnxruntime(served, spartan_onnx, digit_images, protocol):
    server, _ = served
    client = _client(server, protocol)
    logits = np.concatenate([_infer(client, protocol, digit_images[i:i + 8]).as_numpy("logits")
                             for i in range(0, len(digit_images), 8)])
    local = logits_over(open_runner(spartan_onnx, RunnerOptions(device=Device.CPU)),
                        digit_images, batch_size=8)
    result = compare(local, logits)
    assert result.samples == len(digit_images)
    assert result.max_abs_diff <= 1e-5, result.describe()


def test_ensemble_returns_the_top_k_of_in_process_inference(served, spartan_onnx):
    import tritonclient.http as http
    from PIL import Image

    from spartan_deploy.data import DIGITS_DATA_CONFIG, digit_image
    from spartan_deploy.data.preprocess import to_array

    server, _ = served
    encoded, arrays = [], []
    for index in range(6):
        buffer = io.BytesIO()
        digit_image(index).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
        with Image.open(io.BytesIO(buffer.getvalue())) as image:
            image.load()
            arrays.append(to_array(image, DIGITS_DATA_CONFIG))
    batch = np.array([[e] for e in encoded], dtype=object)
    tensor = http.InferInput("IMAGE", list(batch.shape), "BYTES")
    tensor.set_data_from_numpy(batch)
    result = _client(server, Protocol.HTTP).infer(f"{MODEL}-ensemble", [tensor])
    local = logits_over(open_runner(spartan_onnx, RunnerOptions(device=Device.CPU)),
                        np.stack(arrays))
    expected = np.argsort(-local, axis=1, kind="stable")[:, :3]
    assert result.as_numpy("CLASSES").tolist() == expected.tolist()
    assert result.as_numpy("LABELS").tolist() == [[str(c).encode() for c in row]
                                                  for row in expected]
    probs = np.exp(local - local.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(result.as_numpy("SCORES"),
                               np.take_along_axis(probs, expected, 1), atol=1e-5)


def test_classification_extension_reads_labels(served, digit_images):
    import tritonclient.http as http

    server, _ = served
    client = _client(server, Protocol.HTTP)
    output = [http.InferRequestedOutput("logits", class_count=2)]
    result = _infer(client, Protocol.HTTP, digit_images[:3], output=output)
    plain = _infer(client, Protocol.HTTP, digit_images[:3]).as_numpy("logits")
    for row, logits in zip(result.as_numpy("logits"), plain):
        score, index, label = row[0].decode().split(":")
        assert int(index) == int(np.argmax(logits)) and label == index


@pytest.mark.parametrize("shape, dtype, words", [
    ((1, 3, 31, 32), "FP32", "shape"), ((1, 3, 32, 32), "FP64", "FP64"),
])
def test_bad_request_gets_tritons_error_and_server_keeps_serving(served, digit_images, shape,
                                                                 dtype, words):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    server, _ = served
    client = _client(server, Protocol.HTTP)
    bad = http.InferInput("input", list(shape), dtype)
    bad.set_data_from_numpy(np.zeros(shape, np.float64 if dtype == "FP64" else np.float32))
    with pytest.raises(InferenceServerException, match=words):
        client.infer(MODEL, [bad])
    assert server.poll() is None
    assert _infer(client, Protocol.HTTP, digit_images[:2]).as_numpy("logits").shape[0] == 2


def _serve_cli(repo: Path, ports: tuple[int, int, int]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spartan_deploy", "serve", str(repo), "--http-port",
         str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_serve_stops_cleanly_on_signal(triton_install, pool_onnx, tmp_path, signum):
    from spartan_deploy.serve import write_repository
    from spartan_deploy.serve.server import group_members

    write_repository([pool_onnx], tmp_path / "repo")
    process = _serve_cli(tmp_path / "repo", free_ports())
    servers: list[int] = []
    try:
        lines = []
        for line in process.stdout:  # bounded: ready, or an error and exit
            lines.append(line)
            if line.startswith("ready") or "error" in line:
                break
        assert any(line.startswith("ready") for line in lines), "".join(lines)
        servers = _children(process.pid)
        assert servers, "spartan serve started no server process"
        stubs = [c for s in servers for c in _children(s)]
        assert stubs, "the Python backend started no stub"
        process.send_signal(signum)
        assert process.wait(timeout=60) == 0, process.stdout.read()
        for pid in servers:
            assert group_members(pid) == []
        assert not [p for p in servers + stubs if _alive(p)]
    finally:  # never leave a server behind, whatever failed above
        process.kill()
        for pid in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        process.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_busy_port_is_a_one_line_error(triton_install, pool_onnx, tmp_path):
    from spartan_deploy.serve import write_repository
    from spartan_deploy.serve.server import ServeOptions, TritonServer

    write_repository([pool_onnx], tmp_path / "repo")
    http, grpc, metrics = free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", grpc))
        holder.listen()
        server = TritonServer(tmp_path / "repo", ServeOptions(http, grpc, metrics),
                              triton_install)
        with pytest.raises(UsageError, match=f"--grpc-port {grpc} is already in use"):
            server.start()
    assert server.process is None


def test_model_that_fails_to_load_is_named(triton_install, pool_onnx, tmp_path):
    from spartan_deploy.serve import write_repository
    from spartan_deploy.serve.server import ServeOptions, TritonServer, group_members

    write_repository([pool_onnx], tmp_path / "repo")
    (tmp_path / "repo" / "pool-fp32" / "1" / "model.onnx").write_bytes(b"not onnx")
    server = TritonServer(tmp_path / "repo", ServeOptions(*free_ports()), triton_install)
    with pytest.raises(ServeError, match="model 'pool-fp32' failed to load") as failure:
        server.start()
    assert server.poll() is not None and group_members(server.process.pid) == []
    assert server.log_path.is_file() and str(server.log_path) in str(failure.value)
    shutil.rmtree(server.workdir)  # kept for the user to read; not needed here


def test_missing_server_names_the_extra(monkeypatch):
    import importlib.util

    from spartan_deploy.serve import install

    real = importlib.util.find_spec
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    monkeypatch.setattr(install, "SYSTEM_LOCATIONS", ())
    monkeypatch.setattr(install.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytriton" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"spartan-deploy\[serve\]"):
        install.find_server()


def test_engines_and_their_ensembles_are_skipped_on_a_cpu_server(tmp_path, pool_onnx):
    require_module("tritonclient.grpc.model_config_pb2")
    from spartan_deploy.serve import RepositoryOptions, write_repository
    from spartan_deploy.serve.install import ServerInstall
    from spartan_deploy.serve.plan import plan_models
    from tests.serve.test_repository import _engine

    write_repository([pool_onnx, _engine(tmp_path)], tmp_path / "repo",
                     RepositoryOptions(ensemble=True))
    backends = tmp_path / "backends" / "python"
    backends.mkdir(parents=True)
    cpu = ServerInstall(Path("/bin/true"), backends.parent, bundled=True)
    plans = {p.name: p for p in plan_models(tmp_path / "repo", cpu, native=False)}
    assert plans["pool-fp32"].runnable and plans["pool-fp32-ensemble"].runnable
    assert not plans["tiny-fp16-trt"].runnable
    assert "tensorrt backend" in plans["tiny-fp16-trt"].reason
    assert not plans["tiny-fp16-trt-ensemble"].runnable
    assert plans["tiny-fp16-trt-preprocess"].runnable


def test_server_and_its_stubs_share_one_process_group(served):
    # What stop() relies on: ending the group ends the stubs too.
    from spartan_deploy.serve.server import group_members

    server, _ = served
    members = group_members(server.process.pid)
    assert server.process.pid in members and len(members) >= 2
    assert os.getpgid(server.process.pid) == server.process.pid


def test_load_model_selects_an_ensemble_with_its_steps(tmp_path, pool_onnx):
    require_module("tritonclient.grpc.model_config_pb2")
    from spartan_deploy.serve import RepositoryOptions, write_repository
    from spartan_deploy.serve.install import ServerInstall
    from spartan_deploy.serve.plan import plan_models
    from spartan_deploy.serve.server import select_models

    write_repository([pool_onnx], tmp_path / "repo", RepositoryOptions(ensemble=True))
    (tmp_path / "backends" / "python").mkdir(parents=True)
    cpu = ServerInstall(Path("/bin/true"), tmp_path / "backends", bundled=True)
    plans = plan_models(tmp_path / "repo", cpu, native=False)
    chosen = {p.name for p in select_models(plans, ("pool-fp32-ensemble",)) if p.runnable}
    assert chosen == {"pool-fp32", "pool-fp32-preprocess", "pool-fp32-topk",
                      "pool-fp32-ensemble"}
    only = [p.name for p in select_models(plans, ("pool-fp32",)) if p.runnable]
    assert only == ["pool-fp32"]
    with pytest.raises(UsageError, match="--load-model 'nope' is not in the repository"):
        select_models(plans, ("nope",))
