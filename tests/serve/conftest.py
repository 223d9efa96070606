"""Serving fixtures: artefacts with current manifests, free loopback ports, a real server.

Tests that need the Triton server or tritonclient skip (with the reason) when they are
absent. CI installs the ``serve`` extra and sets SPARTAN_REQUIRE_SERVE=1, which turns those
skips into failures: there the tests must run.
"""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from spartan_deploy.manifest import ArtefactKind, Manifest, read_manifest, save_artefact
from spartan_deploy.precision import Precision


def free_port() -> int:
    """A port nothing listens on now (the OS picks it); loopback only."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports() -> tuple[int, int, int]:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    return tuple(sorted(ports))  # type: ignore[return-value]


def digits_config() -> dict:
    from spartan_deploy.data import DIGITS_DATA_CONFIG

    return DIGITS_DATA_CONFIG.to_dict()


def record(path: Path, data: bytes, *, model: str = "tiny",
           precision: Precision = Precision.FP32, kind: ArtefactKind = ArtefactKind.ONNX,
           io: dict | None = None, options: dict | None = None,
           data_config: dict | None = None, config: dict | None = None) -> Path:
    """Write ``data`` to ``path`` with a current (schema 2) manifest, as the stages do."""
    manifest = Manifest(kind=kind, stage="test", precision=precision, parent=None,
                        checkpoint_sha256=None, model=model, config=config,
                        data_config=data_config if data_config is not None else digits_config(),
                        io=io, options=options or {})
    save_artefact(path, lambda tmp: tmp.write_bytes(data), manifest)
    return path


REQUIRE_ENV = "SPARTAN_REQUIRE_SERVE"


def unavailable(reason: str) -> None:
    """Skip, or fail where CI requires the serving tests to run."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set: install the serve extra)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str) -> None:
    """``pytest.importorskip`` that honours SPARTAN_REQUIRE_SERVE."""
    try:
        importlib.import_module(name)
    except ImportError as err:
        unavailable(f"{name} is not installed ({err}): pip install 'spartan-deploy[serve]'")


@pytest.fixture(scope="session")
def triton_install():
    from spartan_deploy.errors import MissingDependencyError
    from spartan_deploy.serve.install import find_server

    try:
        return find_server()
    except MissingDependencyError as err:
        unavailable(f"no Triton server to test against: {err}")


@pytest.fixture(scope="session")
def pool_onnx(tmp_path_factory) -> Path:
    """A tiny pool-linear graph (10 classes, 32x32, dynamic batch) with a manifest."""
    from tests.runtime.onnx_models import make_pool_linear_onnx, pool_weight

    folder = tmp_path_factory.mktemp("pool")
    raw = make_pool_linear_onnx(folder / "raw.onnx", pool_weight(10), size=32)
    return record(folder / "model.onnx", raw.read_bytes(), model="pool")


@pytest.fixture(scope="session")
def spartan_onnx(tiny_onnx_dir, tmp_path_factory) -> Path:
    """The official tiny SpaRTAN exported at 32x32, with a current manifest."""
    source = tiny_onnx_dir / "model.onnx"
    exported = read_manifest(source)
    folder = tmp_path_factory.mktemp("spartan")
    return record(folder / "model.onnx", source.read_bytes(), model="tiny-spartan",
                  io=dict(exported.io), config=dict(exported.config))


@pytest.fixture(scope="session")
def digit_images() -> np.ndarray:
    """A few real test-split digits preprocessed as the models expect."""
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.evaluation import load_eval_data

    return load_eval_data("digits", DIGITS_DATA_CONFIG, limit=24).images


@pytest.fixture(scope="session")
def served(triton_install, spartan_onnx, tmp_path_factory):
    """One server for the read-only tests: the tiny SpaRTAN with its ensemble."""
    from spartan_deploy.serve import RepositoryOptions, write_repository
    from spartan_deploy.serve.server import ServeOptions, TritonServer

    repo = tmp_path_factory.mktemp("served") / "repo"
    result = write_repository([spartan_onnx], repo, RepositoryOptions(ensemble=True, top_k=3))
    http, grpc, metrics = free_ports()
    server = TritonServer(repo, ServeOptions(http, grpc, metrics, startup_timeout_s=120),
                          triton_install)
    server.start()
    yield server, result
    server.stop()
