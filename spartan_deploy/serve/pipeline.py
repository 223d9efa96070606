"""The pipeline's ``--triton`` stage: the run's servable artefacts as a Triton repository in
the run folder, a report section, and (optionally) a short check against the real server.

``spartan pipeline`` calls :func:`triton_stage` with every artefact it made; checkpoints and
other files Triton cannot serve are listed as skipped, never an error.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spartan_deploy.serve.repository import RepositoryOptions, RepositoryResult, write_repository

REPOSITORY_FOLDER = "triton"
_SERVABLE = (".onnx", ".plan", ".engine")


@dataclasses.dataclass(frozen=True)
class TritonStageResult:
    repository: RepositoryResult
    skipped: tuple[tuple[str, str], ...]  # (artefact, why it is not in the repository)
    check: Any = None  # LoadReport of the served check, when asked for

    @property
    def detail(self) -> str:
        """One line for the pipeline's stage table."""
        models = ", ".join(m.name for m in self.repository.classifiers)
        served = ""
        if self.check is not None:
            served = (f"; served check: {self.check.parity.comparison.describe()}, "
                      f"{self.check.levels[-1].throughput:.0f} img/s at concurrency "
                      f"{self.check.levels[-1].concurrency}")
        return f"{len(self.repository.classifiers)} model(s) in {self.repository.folder} " \
               f"({models}){served}"

    def markdown(self) -> str:
        """The report section."""
        from spartan_deploy.serve.report import (
            REPOSITORY_HEADERS, load_markdown, markdown_table, repository_rows)

        folder = self.repository.folder
        lines = ["## Triton model repository", "",
                 f"`{folder}`: native configs for NVIDIA's container (see "
                 f"`{folder / 'README.md'}` for the exact command), CPU variants for "
                 f"`spartan serve {folder}`.", "",
                 markdown_table(REPOSITORY_HEADERS, repository_rows(self.repository))]
        if self.skipped:
            lines += ["", "Not served: " + "; ".join(f"{a} ({why})" for a, why in self.skipped)]
        if self.check is not None:
            lines += ["", "### Served check (bundled Triton, CPU, loopback)", "",
                      load_markdown(self.check)]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository.to_dict(),
                "skipped": [{"artefact": a, "reason": r} for a, r in self.skipped],
                "check": self.check.to_dict() if self.check is not None else None}


def triton_stage(artefacts: Sequence[str | Path], run_folder: str | Path,
                 options: RepositoryOptions = RepositoryOptions(force=True),
                 check: bool = False) -> TritonStageResult:
    """Write ``run_folder/triton`` from the servable ``artefacts``; with ``check``, start
    the server on free loopback ports, compare served logits with ONNX Runtime and load the
    first CPU-servable model briefly (about 5 s)."""
    servable, skipped = [], []
    for artefact in map(Path, artefacts):
        if artefact.suffix.lower() in _SERVABLE:
            servable.append(artefact)
        else:
            skipped.append((str(artefact), "not an ONNX graph or TensorRT engine"))
    folder = Path(run_folder) / REPOSITORY_FOLDER
    repository = write_repository(servable, folder, options)
    report = served_check(repository) if check else None
    return TritonStageResult(repository, tuple(skipped), report)


def served_check(repository: RepositoryResult, duration_s: float = 2.0) -> Any:
    """Serve ``repository`` on free loopback ports and load its first CPU-servable model at
    concurrency 1 and 8 (parity with in-process ONNX Runtime is checked first)."""
    from spartan_deploy.serve.loadtest import LoadOptions, run_loadtest
    from spartan_deploy.serve.server import ServeOptions, TritonServer

    model = next((m.name for m in repository.classifiers if m.cpu_config), None)
    if model is None:
        return None
    http, grpc, metrics = free_loopback_ports(3)
    with TritonServer(repository.folder, ServeOptions(http, grpc, metrics)) as server:
        return run_loadtest(server.endpoints.http, model, LoadOptions(
            concurrency=(1, 8), duration_s=duration_s, warmup_s=0.5,
            repository=repository.folder, check_images=16))


def free_loopback_ports(count: int) -> list[int]:
    """Ports nothing listens on now, chosen by the OS on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for probe in sockets:
            probe.close()
