"""``write_repository`` without a server: layout, configs vs the artefact, batching sources,
refusals (changed hash, existing folder, no manifest), all configs against Triton's schema."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from tests.serve.conftest import require_module

require_module("tritonclient.grpc.model_config_pb2")

from spartan_deploy._io import sha256_file  # noqa: E402
from spartan_deploy.errors import OutputExistsError, UsageError  # noqa: E402
from spartan_deploy.manifest import ArtefactKind  # noqa: E402
from spartan_deploy.precision import Precision  # noqa: E402
from spartan_deploy.serve import BatchingRequest, RepositoryOptions, write_repository  # noqa: E402
from spartan_deploy.serve.errors import ArtefactChangedError  # noqa: E402
from spartan_deploy.serve.model_config import read_config  # noqa: E402
from tests.runtime.onnx_models import make_pool_linear_onnx, pool_weight  # noqa: E402
from tests.serve.conftest import record  # noqa: E402


def _all_configs(repo: Path) -> list[Path]:
    return sorted(repo.glob("*/config.pbtxt")) + sorted(repo.glob("*/configs/*.pbtxt"))


def _engine(folder: Path, profile_max: int = 32) -> Path:
    return record(folder / "model.fp16.plan", b"serialized engine bytes", model="tiny",
                  kind=ArtefactKind.ENGINE, precision=Precision.FP16,
                  io={"input": "input", "shape": ["batch", 3, 32, 32], "output": "logits"},
                  options={"profile": {"min": 1, "opt": 8, "max": profile_max}},
                  config={"num_classes": 10})


def test_onnx_model_folder_matches_the_artefact(pool_onnx, tmp_path):
    repo = tmp_path / "repo"
    result = write_repository([pool_onnx], repo, RepositoryOptions(ensemble=True))
    names = {m.name for m in result.models}
    assert names == {"pool-fp32", "pool-fp32-preprocess", "pool-fp32-topk", "pool-fp32-ensemble"}
    model = repo / "pool-fp32"
    assert sha256_file(model / "1" / "model.onnx") == sha256_file(pool_onnx)
    assert (model / "1" / "model.onnx.sha256").read_text().split()[0] == sha256_file(pool_onnx)
    recorded = json.loads((model / "1" / "model.onnx.json").read_text())
    assert recorded == json.loads(pool_onnx.with_name("model.onnx.json").read_text())
    assert (model / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    native, cpu = read_config(model / "config.pbtxt"), read_config(model / "configs/cpu.pbtxt")
    graph = onnx.load(pool_onnx)
    assert native.platform == "onnxruntime_onnx" and cpu.backend == "python"
    for config in (native, cpu):
        assert config.input[0].name == graph.graph.input[0].name
        assert config.output[0].name == graph.graph.output[0].name
        assert list(config.input[0].dims) == [3, 32, 32]
        assert list(config.output[0].dims) == [10]
        assert config.max_batch_size == 64
        assert config.HasField("dynamic_batching")
    assert cpu.parameters["role"].string_value == "classifier"
    assert (repo / "README.md").read_text().count("docker run") == 1
    assert "tritonserver" in (repo / "README.md").read_text()


def test_every_generated_config_parses_against_model_config(pool_onnx, tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    qdq = make_pool_linear_onnx(folder / "raw.onnx", pool_weight(10), size=32, quantized=True)
    int8 = record(folder / "model.int8.onnx", qdq.read_bytes(), model="pool",
                  precision=Precision.INT8)
    repo = tmp_path / "repo"
    write_repository([pool_onnx, int8, _engine(folder)], repo,
                     RepositoryOptions(ensemble=True, ort_tensorrt=True))
    configs = _all_configs(repo)
    assert len(configs) == 2 + 2 + 1 + 3 * 3  # native+cpu per ONNX, engine, 3 ensembles
    for path in configs:
        read_config(path)  # raises on anything Triton's schema or loader would refuse
    int8_accel = read_config(repo / "pool-int8" / "config.pbtxt").optimization
    accel = int8_accel.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "INT8"


def test_engine_uses_its_profile_and_has_no_cpu_variant(tmp_path):
    engine = _engine(tmp_path, profile_max=32)
    result = write_repository([engine], tmp_path / "repo")
    config = read_config(tmp_path / "repo" / "tiny-fp16-trt" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 32
    assert (tmp_path / "repo" / "tiny-fp16-trt" / "1" / "model.plan").is_file()
    assert not (tmp_path / "repo" / "tiny-fp16-trt" / "configs").exists()
    assert result.models[0].cpu_config is False
    with pytest.raises(UsageError, match="exceeds the engine profile's max 32"):
        write_repository([engine], tmp_path / "repo2", RepositoryOptions(max_batch=64))


def test_fixed_batch_graph_has_no_batching(tmp_path):
    raw = onnx.load(make_pool_linear_onnx(tmp_path / "raw.onnx", pool_weight(10), size=32))
    for value in (raw.graph.input[0], raw.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 4
    fixed = record(tmp_path / "model.onnx", raw.SerializeToString(), model="fixed")
    write_repository([fixed], tmp_path / "repo")
    config = read_config(tmp_path / "repo" / "fixed-fp32" / "config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [4, 3, 32, 32]
    assert not config.HasField("dynamic_batching")


def test_changed_artefact_is_refused_and_nothing_written(pool_onnx, tmp_path):
    changed = tmp_path / "model.onnx"
    changed.write_bytes(pool_onnx.read_bytes() + b"\0")
    changed.with_name("model.onnx.json").write_text(
        pool_onnx.with_name("model.onnx.json").read_text())
    with pytest.raises(ArtefactChangedError, match="changed after it was made"):
        write_repository([changed], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo")]


def test_artefact_without_manifest_is_refused(tmp_path):
    bare = make_pool_linear_onnx(tmp_path / "bare.onnx", pool_weight(10), size=32)
    with pytest.raises(UsageError, match="has no manifest"):
        write_repository([bare], tmp_path / "repo")


def test_existing_repository_needs_force(pool_onnx, tmp_path):
    repo = tmp_path / "repo"
    write_repository([pool_onnx], repo)
    marker = repo / "keep.txt"
    marker.write_text("mine")
    with pytest.raises(OutputExistsError, match="--force"):
        write_repository([pool_onnx], repo)
    assert marker.read_text() == "mine"
    write_repository([pool_onnx], repo, RepositoryOptions(force=True))
    assert not marker.exists() and (repo / "pool-fp32" / "config.pbtxt").is_file()


def _sweep(path: Path, artefact: Path) -> Path:
    rows = [(1, 2.0, 500.0), (4, 4.0, 1000.0), (16, 8.0, 2000.0), (32, 15.0, 2130.0),
            (64, 30.0, 2133.0)]
    data = {"results": [{"artefact": str(artefact), "batch_size": b,
                         "latency": {"median_ms": m, "throughput": t}} for b, m, t in rows]}
    path.write_text(json.dumps(data))
    return path


def test_batching_seeded_from_a_bench_sweep_says_so(pool_onnx, tmp_path):
    bench = _sweep(tmp_path / "bench.json", pool_onnx)
    result = write_repository([pool_onnx], tmp_path / "repo",
                              RepositoryOptions(BatchingRequest(bench=bench)))
    policy = result.models[0].batching
    assert policy.preferred == (16, 32, 64)  # within 10 % of the best throughput
    assert policy.queue_delay_us == 2000  # batch-1 median latency
    assert {k: v.value for k, v in policy.sources.items()} == {
        "enabled": "default", "preferred": "bench sweep", "queue_delay_us": "bench sweep",
        "instances": "bench sweep"}
    config = read_config(tmp_path / "repo" / "pool-fp32" / "config.pbtxt")
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32, 64]
    assert "bench sweep" in (tmp_path / "repo" / "pool-fp32" / "config.pbtxt").read_text()


def test_given_batching_wins_over_the_sweep(pool_onnx, tmp_path):
    bench = _sweep(tmp_path / "bench.json", pool_onnx)
    request = BatchingRequest(preferred=(8,), queue_delay_us=500, instances=2, bench=bench)
    policy = write_repository([pool_onnx], tmp_path / "repo",
                              RepositoryOptions(request)).models[0].batching
    assert (policy.preferred, policy.queue_delay_us, policy.instances) == ((8,), 500, 2)
    assert all(v.value == "given" for k, v in policy.sources.items() if k != "enabled")


def test_sweep_of_another_artefact_is_refused(pool_onnx, tmp_path):
    bench = _sweep(tmp_path / "bench.json", tmp_path / "other.onnx")
    with pytest.raises(UsageError, match="0 batch size"):
        write_repository([pool_onnx], tmp_path / "repo",
                         RepositoryOptions(BatchingRequest(bench=bench)))


def test_batching_off(pool_onnx, tmp_path):
    write_repository([pool_onnx], tmp_path / "repo",
                     RepositoryOptions(BatchingRequest(enabled=False)))
    assert not read_config(tmp_path / "repo" / "pool-fp32" / "config.pbtxt").HasField(
        "dynamic_batching")


def test_names_labels_and_collisions(pool_onnx, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)))
    write_repository([pool_onnx], tmp_path / "repo",
                     RepositoryOptions(names=("digits",), labels=labels))
    assert (tmp_path / "repo" / "digits" / "labels.txt").read_text().splitlines()[3] == "digit 3"
    with pytest.raises(UsageError, match="both become model"):
        write_repository([pool_onnx, pool_onnx], tmp_path / "repo2")
    labels.write_text("a\nb\n")
    with pytest.raises(UsageError, match="has 2 names but"):
        write_repository([pool_onnx], tmp_path / "repo3", RepositoryOptions(labels=labels))
