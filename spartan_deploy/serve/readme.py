"""The ``README.md`` written into every repository: what is in it and how to serve it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spartan_deploy.serve.repository import RepositoryResult

# The NVIDIA container whose server matches the one in nvidia-pytriton 0.7.0 (Triton 2.51).
CONTAINER = "nvcr.io/nvidia/tritonserver:24.10-py3"
CONTAINER_TENSORRT = "10.5"


def repository_readme(result: RepositoryResult) -> str:
    rows = ["| model | role | platform | max batch | batching | artefact (sha256) |",
            "|---|---|---|---|---|---|"]
    for m in result.models:
        batching = m.batching.describe() if m.batching else "-"
        source = f"{m.artefact} ({m.sha256[:12]}...)" if m.artefact and m.sha256 else "-"
        rows.append(f"| {m.name} | {m.role} | {m.platform} | {m.max_batch_size} | "
                    f"{batching} | {source} |")
    engines = any(m.platform == "tensorrt_plan" for m in result.models)
    python = any(m.platform == "python" for m in result.models)
    first = result.classifiers[0].name if result.classifiers else "MODEL"
    return "\n".join([
        "# Triton model repository (written by spartan triton)", "",
        *rows, "",
        "Each model folder holds `config.pbtxt` (native backend for a GPU server), for ONNX "
        "graphs `configs/cpu.pbtxt` (the same graph through spartan's ONNX Runtime runner in "
        "the Python backend), `labels.txt` (Triton's classification extension) and in `1/` "
        "the artefact, its manifest and its sha256 (`cd 1 && sha256sum -c *.sha256`).", "",
        "## On a GPU server (NVIDIA's container: onnxruntime, TensorRT and Python backends)", "",
        "```bash",
        "docker run --rm --gpus all --shm-size 1g \\",
        "  -p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 -p 127.0.0.1:8002:8002 \\",
        '  -v "$PWD:/models:ro" ' + CONTAINER + " \\",
        "  tritonserver --model-repository=/models",
        "```", "",
        *([f"TensorRT engines (`model.plan`) load only under the TensorRT version they were "
           f"built with ({CONTAINER} carries TensorRT {CONTAINER_TENSORRT}) on the GPU model "
           "they were built for; rebuild them on the serving machine otherwise.", ""]
          if engines else []),
        *(["The Python-backend models (ensemble pre/post-processing) need numpy and Pillow "
           "in the container: start it with `bash -c \"pip install pillow && tritonserver "
           "--model-repository=/models\"` or bake them into an image.", ""] if python else []),
        "## On this machine (CPU, the server shipped in nvidia-pytriton)", "",
        "```bash", "pip install 'spartan-deploy[serve]'",
        "spartan serve .            # loopback only; Ctrl-C stops it",
        f"spartan loadtest 127.0.0.1:8000 {first} --repository .", "```", "",
        "`spartan serve` starts Triton with `--model-config-name=cpu` when the server has no "
        "ONNX Runtime backend, so ONNX models use `configs/cpu.pbtxt`; engines need a GPU "
        "server and are skipped there.", "",
        "## Scaling out", "",
        "Run N replicas of the container above behind a load balancer, all reading this "
        "folder (a shared volume or `--model-repository=s3://...`); readiness is "
        "`GET /v2/health/ready`, per-model queue time and batch sizes are on the metrics "
        "port (8002). Within one GPU, raise `instance_group.count` to overlap copies and "
        "compute; re-seed `dynamic_batching` from a `spartan bench` sweep on that GPU "
        "(`spartan triton --bench`), since the CPU sweep's sizes do not transfer.", "",
    ])
