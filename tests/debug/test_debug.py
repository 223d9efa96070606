"""``debug_artefact`` end to end: a planted fault is found, every graph kind runs, and bad
input is refused with one line (or, for a foreign graph, answered per tensor)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import onnx
import pytest

from spartan_deploy.debug.core import DebugOptions, debug_artefact, rank_units
from spartan_deploy.errors import UsageError
from tests.debug.conftest import LIMIT, break_scale, other_weights, rename_everything

FAULT = 100.0  # the planted fault: one activation scale 100x too coarse


def options(**kwargs) -> DebugOptions:
    return DebugOptions(limit=LIMIT, threads=1, **kwargs)


@pytest.fixture(scope="module")
def clean(artefacts):
    return {graph: debug_artefact(artefacts / graph, options())
            for graph in ("model.int8.trt.onnx", "model.int8.cpu.onnx")}


@pytest.mark.parametrize("graph", ["model.int8.trt.onnx", "model.int8.cpu.onnx"])
def test_planted_fault_is_ranked_first(clean, run_copy: Path, graph: str) -> None:
    report = clean[graph]
    # A mixer from the middle of the good graph's ranking: the fault has to lift it to first.
    mixers = [n for n in report.ranking if n.endswith(("smixer", "cmixer"))]
    unit = mixers[len(mixers) // 2]
    assert report.ranking[0] != unit
    broken = break_scale(run_copy / graph, unit, FAULT, run_copy / f"broken.{graph}")
    found = debug_artefact(broken, options(reference=run_copy / "model.onnx"))
    assert found.ranking[0] == unit
    local = {f.unit.name: f.local.sqnr_db for f in found.figures}
    before = {f.unit.name: f.local.sqnr_db for f in report.figures}
    assert local[unit] < before[unit] - 10
    # Units before the fault are untouched; after it, the accumulated error is worse.
    position = found.ranking and [f.unit.name for f in found.figures].index(unit)
    for figure, old in zip(found.figures[:position], report.figures[:position]):
        assert figure.accumulated.sqnr_db == pytest.approx(old.accumulated.sqnr_db)
    # Returning that unit alone to float recovers what the fault cost.
    what_if = next(w for w in found.what_if if w.unit == unit)
    assert what_if.logits_sqnr_db > found.logits.sqnr_db + 3
    assert unit in found.suggested
    assert f"--exclude {unit}" in found.exclude_args


def test_rank_units_gives_quantize_the_same_order(artefacts, run_copy: Path) -> None:
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.evaluation import load_eval_data

    unit = "stage2.block1.smixer"
    broken = break_scale(run_copy / "model.int8.trt.onnx", unit, FAULT, run_copy / "b.onnx")
    images = load_eval_data("digits", DIGITS_DATA_CONFIG, limit=LIMIT).images
    model = onnx.load(broken)
    ranked = rank_units(model, onnx.load(artefacts / "model.onnx"), images, threads=1)
    assert ranked[0].name == unit
    names = {n.name for n in model.graph.node}
    assert ranked[0].nodes and set(ranked[0].nodes) <= names
    assert [r.local_sqnr_db for r in ranked] == sorted(r.local_sqnr_db for r in ranked)


@pytest.mark.parametrize("graph, precision", [("model.fp16.onnx", "fp16"),
                                              ("model.int8.fp16.onnx", "int8+fp16")])
def test_fp16_graphs_run_emulated(artefacts, graph: str, precision: str) -> None:
    report = debug_artefact(artefacts / graph, options(what_if=1))
    assert report.precision.value == precision
    assert report.block_map and report.ranking
    assert all(math.isfinite(f.accumulated.sqnr_db) for f in report.figures[:-2])
    assert math.isfinite(report.logits.sqnr_db)  # emulated rounding: never exact
    flips = [f.flip_rate for f in report.figures if f.unit.kind.value == "cmixer"]
    assert flips and all(r is not None for r in flips)
    assert len(report.what_if) == 1 and report.what_if[0].unit == report.ranking[0]


def test_all_runs_what_if_for_every_reduced_unit(artefacts) -> None:
    report = debug_artefact(artefacts / "model.int8.cpu.onnx", options(all_units=True))
    assert [w.unit for w in report.what_if] == list(report.ranking)
    assert len(report.ranking) > 5


def test_fp32_candidate_is_refused(artefacts) -> None:
    with pytest.raises(UsageError, match="FP32 graph"):
        debug_artefact(artefacts / "model.onnx", options())


def test_reference_that_is_not_fp32_is_refused(artefacts) -> None:
    with pytest.raises(UsageError, match="int8 graph"):
        debug_artefact(artefacts / "model.fp16.onnx",
                       options(reference=artefacts / "model.int8.trt.onnx"))


def test_reference_with_other_weights_is_refused(artefacts, run_copy: Path) -> None:
    other = other_weights(artefacts / "model.onnx", run_copy / "other.onnx")
    with pytest.raises(UsageError, match="other weights"):
        debug_artefact(run_copy / "model.int8.trt.onnx", options(reference=other))


def test_reference_of_another_size_is_refused(scaled_tiny, artefacts, tmp_path: Path) -> None:
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import LoadedModel

    bigger = export_onnx(LoadedModel("tiny", scaled_tiny, DIGITS_DATA_CONFIG),
                         tmp_path / "model.onnx", ExportOptions(img_size=64)).path
    with pytest.raises(UsageError, match="not the same model"):
        debug_artefact(artefacts / "model.int8.trt.onnx", options(reference=bigger))


def test_reference_from_another_checkpoint_is_refused(artefacts, tmp_path: Path) -> None:
    """New-schema manifests: the lineage is read, and a reference whose manifest names
    another checkpoint is refused before anything runs."""
    from spartan_deploy.manifest import ArtefactKind, Manifest, parent_of, save_artefact
    from spartan_deploy.precision import Precision

    reference, candidate = tmp_path / "model.onnx", tmp_path / "model.int8.trt.onnx"
    data = {"input_size": 32, "mean": [0.3052] * 3, "std": [0.3232] * 3, "resize_size": 32,
            "resize_rule": "stretch", "grayscale": True}
    save_artefact(reference, lambda tmp: shutil.copy(artefacts / "model.onnx", tmp),
                  Manifest(ArtefactKind.ONNX, "export", Precision.FP32, None, "a" * 64,
                           data_config=data))
    save_artefact(candidate, lambda tmp: shutil.copy(artefacts / "model.int8.trt.onnx", tmp),
                  Manifest(ArtefactKind.ONNX, "quantize", Precision.INT8,
                           parent_of(reference, candidate), "a" * 64, data_config=data))
    report = debug_artefact(candidate, options(what_if=1))  # the reference found by lineage
    assert report.reference == reference
    assert any("recorded source" in n for n in report.notes)
    stranger = tmp_path / "other" / "model.onnx"
    save_artefact(stranger, lambda tmp: other_weights(artefacts / "model.onnx", tmp),
                  Manifest(ArtefactKind.ONNX, "export", Precision.FP32, None, "b" * 64,
                           data_config=data))
    with pytest.raises(UsageError, match="another checkpoint"):
        debug_artefact(candidate, options(reference=stranger))


def test_no_reference_found_says_what_to_give(artefacts, tmp_path: Path) -> None:
    lonely = tmp_path / "graph.onnx"
    shutil.copy(artefacts / "model.int8.trt.onnx", lonely)
    with pytest.raises(UsageError, match="--reference"):
        debug_artefact(lonely, options())


def test_graph_without_block_map_falls_back_to_tensors(artefacts, tmp_path: Path) -> None:
    onnx.save(rename_everything(onnx.load(artefacts / "model.onnx")), tmp_path / "model.onnx")
    onnx.save(rename_everything(onnx.load(artefacts / "model.int8.trt.onnx")),
              tmp_path / "q.onnx")
    report = debug_artefact(tmp_path / "q.onnx",
                            options(reference=tmp_path / "model.onnx", model="spartan-t-digits"))
    assert not report.block_map and not report.ranking and not report.what_if
    assert any("no block map" in n and "per-tensor" in n for n in report.notes)
    assert len(report.figures) > 20
    assert any(f.flip_rate is not None for f in report.figures)  # argmax matched by name
    assert any(f.accumulated is not None and f.accumulated.sqnr_db < 40
               for f in report.figures)


def test_unlabelled_folder_gives_everything_but_top1(artefacts, tmp_path: Path) -> None:
    from spartan_deploy.data import digit_image, digits_split

    folder = tmp_path / "flat"
    folder.mkdir()
    for index in digits_split("test")[:24]:
        digit_image(int(index)).save(folder / f"{int(index)}.png")
    report = debug_artefact(artefacts / "model.int8.trt.onnx",
                            DebugOptions(data=str(folder), what_if=1, threads=1))
    assert report.images == 24
    assert report.top1_fp32 is None and report.top1_candidate is None
    assert report.what_if[0].top1 is None and report.what_if[0].agreement > 0
    assert report.ranking and report.logits.top1_agreement is not None
    assert any("no labels" in n for n in report.notes)


def test_fixed_batch_graphs_run_in_whole_batches(artefacts, tmp_path: Path) -> None:
    for name in ("model.onnx", "model.int8.trt.onnx"):
        model = onnx.load(artefacts / name)
        dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 3
        onnx.save(model, tmp_path / name)
    shutil.copy(artefacts / "model.onnx.json", tmp_path / "model.onnx.json")
    report = debug_artefact(tmp_path / "model.int8.trt.onnx",
                            DebugOptions(limit=20, what_if=1, threads=1))
    assert report.images == 18
    assert any("fixed batch of 3" in n for n in report.notes)
    assert any("2 image(s) left out" in n for n in report.notes)
