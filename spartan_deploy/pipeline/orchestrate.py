"""The one orchestration of chained stages, used by ``spartan pipeline`` and
``spartan build-engine`` (and nothing else).

An :class:`Orchestrator` owns one output folder and its ledger. Each stage method runs one
forward stage (export, quantize, precision graph, engine) unless the ledger shows its
outputs complete and made from the same inputs with the same options; an artefact already
there that this folder's ledger did not make is adopted when its manifest shows it is what
the stage would make, and otherwise never replaced without ``--force``. Calibration images
and evaluation data are decoded once per run, for every stage that needs them.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spartan_deploy._io import FolderLock, ensure_writable
from spartan_deploy.errors import OutputExistsError, TensorRTMissingError, UsageError
from spartan_deploy.manifest import Manifest, manifest_path, read_manifest
from spartan_deploy.paths import default_calib
from spartan_deploy.pipeline.ledger import Ledger

if TYPE_CHECKING:
    from spartan_deploy.engine.handoff import Handoff
    from spartan_deploy.engine.options import BuildOptions
    from spartan_deploy.evaluation import EvalData
    from spartan_deploy.model import DataConfig, LoadedModel
    from spartan_deploy.quantize.calibration import CalibrationSet
    from spartan_deploy.quantize.options import Target


class Status(str, enum.Enum):
    DONE = "done"
    REUSED = "reused"
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class StageRecord:
    """One line of a run's summary."""

    name: str
    status: Status
    seconds: float
    outputs: tuple[Path, ...] = ()
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "status": self.status.value,
                "seconds": round(self.seconds, 2), "outputs": [str(p) for p in self.outputs],
                "detail": self.detail}


OnStart = Callable[[str], None]
OnRecord = Callable[[StageRecord], None]
Adopt = Callable[[Manifest], bool]


def with_manifests(*paths: Path) -> list[Path]:
    """Each artefact with the manifest beside it: the two are one unit for reuse."""
    return [f for p in paths for f in (p, manifest_path(p))]


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What every stage of a run shares: calibration folder, evaluation data, threads."""

    calib: Path | None = None  # None: the bundled calibration set
    data: str | None = None  # None: the data the model records; "none": no data
    limit: int | None = None
    force: bool = False  # replace artefacts this run's ledger did not make


class Orchestrator:
    """One run in one folder: the ledger, the stage records, data decoded once.

    A context manager: the folder is locked (:class:`FolderLock`) from construction to
    ``close``, so a second run into the same folder is refused instead of racing this one.
    """

    def __init__(self, folder: Path, inputs: RunInputs = RunInputs(),
                 on_start: OnStart = lambda _name: None,
                 on_record: OnRecord = lambda _record: None) -> None:
        from spartan_deploy.quantize.calibration import folder_digest

        self.inputs = inputs
        self.calib = default_calib(inputs.calib)
        # A bad --calib is refused before the output folder is made (hashing is cheap).
        self._calib_digest = folder_digest(self.calib)
        self._check_data()
        _refuse_inside_inputs(folder, self.calib, inputs.data)
        self.folder = _make_folder(folder)
        self._lock: FolderLock | None = FolderLock(self.folder)
        self.records: list[StageRecord] = []
        self.on_start, self.on_record = on_start, on_record
        self._calibration: dict[str, CalibrationSet] = {}
        self._data: dict[str, EvalData | None] = {}
        try:
            self.ledger = Ledger(self.folder)
            if self.ledger.damaged:
                self.skip("ledger", f"{self.ledger.path} was unreadable or of the wrong "
                          "shape: rebuilt; intact artefacts are adopted from their manifests")
        except BaseException:  # the caller never gets the object to close: release here
            self.close()
            raise

    def close(self) -> None:
        """Release the folder for the next run."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_data(self) -> None:
        """A bad --data is refused before any stage runs (it is first read after export)."""
        from spartan_deploy.evaluation import check_data_source

        if self.inputs.data is not None:
            check_data_source(self.inputs.data)

    # --- shared inputs, decoded on first use ------------------------------------------
    def calib_digest(self) -> str:
        return self._calib_digest

    def calibration(self, data_config: DataConfig) -> CalibrationSet:
        from spartan_deploy.quantize.calibration import load_calibration_set
        from spartan_deploy.quantize.options import QuantizeOptions

        key = repr(data_config)
        if key not in self._calibration:
            self._calibration[key] = load_calibration_set(self.calib, data_config,
                                                          QuantizeOptions())
        return self._calibration[key]

    def eval_data(self, data_config: DataConfig) -> EvalData | None:
        from spartan_deploy.evaluation import load_eval_data, resolve_data

        key = repr(data_config)
        if key not in self._data:
            source = resolve_data(self.inputs.data, data_config)
            self._data[key] = None if source is None else load_eval_data(
                source, data_config, limit=self.inputs.limit, require_labels=True)
        return self._data[key]

    def data_options(self) -> dict[str, Any]:
        return {"data": self.inputs.data, "limit": self.inputs.limit}

    # --- running a stage ----------------------------------------------------------------
    def stage(self, name: str, inputs: list[Path], options: dict[str, Any],
              outputs: list[Path], make: Callable[[], str],
              adopt: Adopt | None = None) -> StageRecord:
        """Run ``make`` unless its outputs are complete and current (see the module doc)."""
        start = time.perf_counter()
        if self.ledger.is_current(name, inputs, options, outputs):
            detail = self.ledger.summary(name).get("detail", "")
            return self.add(StageRecord(name, Status.REUSED, time.perf_counter() - start,
                                         tuple(outputs[::2]), detail))
        if self._adoptable(outputs, adopt):
            self.ledger.record(name, inputs, options, outputs, {"detail": "adopted"})
            return self.add(StageRecord(name, Status.REUSED, time.perf_counter() - start,
                                         tuple(outputs[::2]), "made earlier; adopted"))
        self._refuse_foreign(name, outputs)
        self.on_start(name)
        detail = make()
        self.ledger.record(name, inputs, options, outputs, {"detail": detail})
        return self.add(StageRecord(name, Status.DONE, time.perf_counter() - start,
                                     tuple(outputs[::2]), detail))

    def skip(self, name: str, reason: str) -> StageRecord:
        return self.add(StageRecord(name, Status.SKIPPED, 0.0, (), reason))

    def add(self, record: StageRecord) -> StageRecord:
        self.records.append(record)
        self.on_record(record)
        return record

    def _adoptable(self, outputs: list[Path], adopt: Adopt | None) -> bool:
        if adopt is None or not all(p.is_file() for p in outputs):
            return False
        manifest = read_manifest_quietly(outputs[0])  # a damaged one adopts nothing
        from spartan_deploy._io import sha256_file

        return (manifest is not None and manifest.sha256 == sha256_file(outputs[0])
                and adopt(manifest))

    def always(self, name: str, outputs: list[Path], make: Callable[[], str],
               ours: Callable[[], bool] = lambda: False) -> str:
        """Run ``make`` (a step that is redone on every run, such as measurements) after the
        same refusal of files this folder's runs did not make (``ours()``: the files say
        themselves that a run made them, for a rebuilt ledger), then record its outputs."""
        self.refuse_foreign(name, outputs, ours)
        detail = make()
        self.ledger.record(name, [], {}, outputs, {"detail": detail})
        return detail

    def refuse_foreign(self, name: str, outputs: list[Path],
                       ours: Callable[[], bool] = lambda: False) -> None:
        """The refusal of :meth:`always`, on its own: a step that runs on every run can be
        checked before the slow stages, not after them."""
        if not ours():
            self._refuse_foreign(name, outputs)

    def _refuse_foreign(self, name: str, outputs: list[Path]) -> None:
        """Files the ledger did not make are the user's: replaced only with --force.

        So is an output the ledger made that was since replaced by another command (e.g.
        ``spartan export -o`` into this folder): its bytes differ from the record and its
        own manifest vouches for them. A damaged output (bytes matching no manifest) is
        still ours to redo.
        """
        if self.inputs.force:
            return
        made = self.ledger.made_by_us(outputs)
        foreign = [p for p in outputs if os.path.lexists(p)
                   and (p not in made or self._replaced_elsewhere(p))]
        if foreign:
            raise OutputExistsError(
                f"{foreign[0]} exists and was not made by this folder's runs from these "
                f"inputs (stage {name}); pass --force to replace it, or choose another "
                "output folder")

    def _replaced_elsewhere(self, path: Path) -> bool:
        if not path.is_file() or path.name.endswith(".json"):
            return False
        current = self.ledger.digest(path)
        if current == self.ledger.recorded_digest(path):
            return False
        manifest = read_manifest_quietly(path)
        return manifest is not None and manifest.sha256 == current

    # --- the stages ---------------------------------------------------------------------
    def export(self, loaded: LoadedModel) -> Path:
        from spartan_deploy.export.options import ExportOptions
        from spartan_deploy.pipeline.stages import model_source

        source = model_source(loaded)
        output = self.folder / "model.onnx"
        options = ExportOptions()

        def make() -> str:
            from spartan_deploy.export import export_onnx

            result = export_onnx(loaded, output, options, force=True)
            return f"parity vs PyTorch: {result.parity.describe()}"

        digest = self.ledger.digest(source)
        self.stage("export", [source], options.to_dict(), with_manifests(output), make,
                   adopt=lambda m: (m.stage == "export" and m.parent is not None
                                    and m.parent.sha256 == digest
                                    and dict(m.options) == options.to_dict()))
        return output

    def quantize(self, onnx_path: Path, target: Target) -> Path:
        from spartan_deploy.quantize.core import default_output
        from spartan_deploy.quantize.options import QuantizeOptions

        options = QuantizeOptions(target=target, data=self.inputs.data, limit=self.inputs.limit)
        output = default_output(onnx_path, target)

        def make() -> str:
            from spartan_deploy.quantize import quantize_onnx

            config = _data_config(onnx_path)
            result = quantize_onnx(onnx_path, self.calib, options, output, force=True,
                                   calibration=self.calibration(config),
                                   data=self.eval_data(config))
            accuracy = ("" if result.fp32_top1 is None or result.int8_top1 is None else
                        f"top-1 FP32 {result.fp32_top1:.2%} -> INT8 {result.int8_top1:.2%}, ")
            return f"{accuracy}{sum(result.qdq.values())} Q/DQ nodes"

        digest, calib = self.ledger.digest(onnx_path), self.calib_digest()
        recorded = {**options.to_dict(), "calib": calib}
        self.stage(f"quantize ({target.value})", [onnx_path], recorded,
                   with_manifests(output), make,
                   adopt=lambda m: (m.stage == "quantize" and m.parent is not None
                                    and m.parent.sha256 == digest
                                    and m.options.get("target") == target.value
                                    and m.options.get("method") == options.method.value
                                    and m.details.get("calibration", {})
                                    .get("folder_sha256") == calib))
        return output

    def precision_graph(self, source: Path, keep_fp32: tuple[str, ...] = ()) -> Path:
        """The FP16 graph of an FP32 ONNX, or the INT8+FP16 graph of a Q/DQ one;
        ``keep_fp32``: unit, block, stage or node names kept in FP32 besides the defaults."""
        from spartan_deploy.engine.precision import PrecisionOptions
        from spartan_deploy.engine.precision_graph import (
            default_graph_path, graph_precision_for)
        from spartan_deploy.onnx_graph import load_onnx

        model = load_onnx(source)
        precision = graph_precision_for(model)
        output = default_graph_path(source, precision)
        options = PrecisionOptions(keep_nodes=_node_names(model, keep_fp32))

        def make() -> str:
            from spartan_deploy.engine.precision_graph import make_precision_graph

            config = _data_config(source)
            calibration = self.calibration(config)
            data = self.eval_data(config) or _calibration_as_data(calibration)
            result = make_precision_graph(source, data, calibration.images, output,
                                          options, force=True)
            accuracy = result.accuracy
            if accuracy.top1 is None:
                return f"top-1 agreement with FP32 {accuracy.agreement_top1:.2%}"
            return (f"top-1 FP32 {accuracy.top1_fp32:.2%} -> {accuracy.top1:.2%} "
                    "(FP16 arithmetic emulated on CPU)")

        digest = self.ledger.digest(source)
        self.stage(f"{precision.value} graph", [source],
                   {**self.data_options(), "calib": self.calib_digest(),
                    **options.to_dict()},
                   with_manifests(output), make,
                   adopt=lambda m: (m.stage == "precision-graph" and m.parent is not None
                                    and m.parent.sha256 == digest
                                    and all(m.options.get(k) == v
                                            for k, v in options.to_dict().items())))
        return output

    def handoff(self, graph: Path, build: BuildOptions, plan: Path) -> Handoff:
        """The files that build and check ``graph``'s engine with NVIDIA's tools on a GPU
        machine (trtexec and Polygraphy commands, reference inputs and outputs)."""
        from spartan_deploy.engine.build import graph_precision
        from spartan_deploy.engine.handoff import handoff_paths, load_handoff, write_handoff

        paths = handoff_paths(graph)

        def make() -> str:
            config = _data_config(graph)
            data = resolve_data_name(self.inputs.data, config)
            made = write_handoff(graph, graph_precision(graph), build,
                                 self.calibration(config).images, plan=plan, eval_data=data,
                                 force=True)
            return f"atol {made.tolerance.atol:.3g}, rtol {made.tolerance.rtol:.3g}"

        self.stage(f"hand-off ({graph.name})", [graph],
                   {**build.to_dict(), "plan": plan.name, "calib": self.calib_digest(),
                    **self.data_options()}, with_manifests(*paths), make)
        return load_handoff(graph, plan)

    def engine(self, graph: Path, build: BuildOptions, output: Path | None = None) -> Path:
        """The TensorRT plan of ``graph``; TensorRTMissingError (exit 4) without TensorRT."""
        from spartan_deploy.engine.build import build_engine, default_plan_path

        plan = output or default_plan_path(graph)

        def make() -> str:
            result = build_engine(graph, build, plan, force=True)
            return f"{result.precision.value} engine, {result.manifest.details['engine']}"

        self.stage(f"engine ({plan.name})", [graph], build.to_dict(), with_manifests(plan),
                   make)
        return plan


def read_manifest_quietly(path: Path) -> Manifest | None:
    """The manifest beside ``path``, or None when it is absent or damaged."""
    from spartan_deploy.errors import SpartanError

    try:
        return read_manifest(path)
    except SpartanError:
        return None


def _refuse_inside_inputs(folder: Path, calib: Path, data: str | None) -> None:
    """An output folder inside the calibration or data folder would feed the run's own
    outputs back in (the report's plot is an image; report/ would become a class)."""
    from spartan_deploy.data.dataset import is_builtin

    out = Path(folder).resolve()
    for option, source in (("--calib", calib), ("--data", data)):
        if source is None or is_builtin(source) or not Path(source).is_dir():
            continue
        root = Path(source).resolve()
        if out == root or root in out.parents:
            raise UsageError(f"output folder {str(folder)!r} is inside {option} "
                             f"{str(source)!r}; its outputs would become inputs, choose "
                             "another output folder")


def _make_folder(folder: Path) -> Path:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"output folder {str(folder)!r} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output folder {str(folder)!r} ({err.strerror}); "
                         "choose another") from err
    ensure_writable(folder)
    return folder


def _data_config(onnx_path: Path) -> DataConfig:
    from spartan_deploy.model.config import DataConfig

    recorded = read_manifest(onnx_path)
    if recorded is None or recorded.data_config is None:
        raise UsageError(f"{onnx_path} has no manifest with a data config; export it with "
                         "`spartan export` so its preprocessing is known")
    return DataConfig.from_dict(recorded.data_config, where=str(manifest_path(onnx_path)))


def resolve_data_name(data: str | None, config: DataConfig) -> str | None:
    from spartan_deploy.evaluation import resolve_data

    return resolve_data(data, config)


def _node_names(model: Any, items: tuple[str, ...]) -> tuple[str, ...]:
    """Unit, block and stage names (``stage3.block7.cmixer``) as the graph's node names;
    anything else is taken as a node name (checked by the conversion)."""
    if not items:
        return ()
    from spartan_deploy.debug import block_map_of, expand_block_names

    blocks, rest = expand_block_names(block_map_of(model), items)
    unknown = sorted(set(rest) - {n.name for n in model.graph.node})
    if unknown:
        raise UsageError(f"--keep-fp32 {unknown[0]!r} is neither a unit, block or stage of "
                         "this graph (spartan debug lists them, e.g. stage3.block7.cmixer) "
                         "nor one of its node names")
    return tuple(dict.fromkeys([n for names in blocks.values() for n in names] + rest))


def _calibration_as_data(calibration: CalibrationSet) -> EvalData:
    """Without labelled data, graphs are compared with FP32 on the held-out calibration
    images (agreement only, no top-1)."""
    from spartan_deploy.evaluation import EvalData

    images = calibration.holdout if len(calibration.holdout) else calibration.images
    return EvalData(images, None, {"source": calibration.folder, "split": "calibration",
                                   "count": len(images), "labelled": False})


def missing_tensorrt(orchestrator: Orchestrator, err: TensorRTMissingError,
                     name: str) -> None:
    """Record that TensorRT is absent (the graphs before it were written)."""
    orchestrator.skip(name, f"TensorRT is not installed here: {err}")
