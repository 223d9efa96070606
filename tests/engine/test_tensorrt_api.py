"""Our TensorRT code against TensorRT's own API, without TensorRT or a GPU.

1. mypy type-checks the TensorRT modules against ``tensorrt-stubs`` (TensorRT 10.13).
2. Every TensorRT name those modules touch on the TensorRT 11 path must be bound by the
   TensorRT 11.4 extension module (read from the ``tensorrt-cu13-bindings`` wheel).

Both come from a cache filled once by ``python -m tests.engine.tensorrt_api --fetch`` (see
tests/engine/tensorrt_api.py). Without it the tests skip, except under CI, where a skipped
API check would hide exactly what it exists to catch, so they fail.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine import tensorrt_api

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "spartan_deploy"
# The modules that run on TensorRT 11 (held to the 11.x names) and the one that runs only
# below 10.12 (held to the 10.x stubs alone).
TENSORRT_MODULES = (PACKAGE / "engine" / "trt.py", PACKAGE / "runtime" / "tensorrt.py")
LEGACY_MODULE = PACKAGE / "engine" / "trt_legacy.py"
TYPED_MODULES = (*TENSORRT_MODULES, LEGACY_MODULE, PACKAGE / "engine" / "compat.py")

MYPY_CONFIG = """\
[mypy]
python_version = {python}
mypy_path = {stubs}
# Only TensorRT's stubs (and numpy's, which are stubs too) are followed; our other modules,
# torch and onnx are read as Any, which keeps the check to the TensorRT layer and fast.
follow_imports = silent
ignore_missing_imports = True
check_untyped_defs = True
warn_unused_ignores = True
[mypy-torch.*,onnx.*,onnxruntime.*,polygraphy.*,modelopt.*,matplotlib.*,scipy.*]
follow_imports = skip
[mypy-tensorrt.*,tensorrt_bindings.*]
# Generated stubs: their own lint findings are not ours to fix.
ignore_errors = True
"""


@pytest.fixture(scope="module")
def api_cache() -> Path:
    reason = tensorrt_api.missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must fetch it before pytest")
        pytest.skip(reason)
    return tensorrt_api.cache_dir()


def run_mypy(files: list[Path], cache: Path, workdir: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("CI"):
            pytest.fail("mypy is not installed; it is in the test extra")
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    config = workdir / "mypy.ini"
    config.write_text(MYPY_CONFIG.format(python=f"{sys.version_info[0]}.{sys.version_info[1]}",
                                         stubs=tensorrt_api.stubs_dir(cache)))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
         str(cache / "mypy-cache"), "--no-error-summary", *map(str, files)],
        capture_output=True, text=True, cwd=REPO, timeout=600)


def test_tensorrt_modules_type_check_against_the_stubs(api_cache: Path, tmp_path: Path) -> None:
    result = run_mypy(list(TYPED_MODULES), api_cache, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_catches_a_misused_tensorrt_call(api_cache: Path, tmp_path: Path) -> None:
    """The check can fail: a made-up flag and a wrong argument type are reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def build() -> None:\n"
        "    import tensorrt as trt\n"
        "    config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()\n"
        "    config.set_flag(trt.BuilderFlag.FP17)\n"
        "    config.set_memory_pool_limit('workspace', 1 << 30)\n")
    result = run_mypy([probe], api_cache, tmp_path)
    assert result.returncode != 0
    assert "FP17" in result.stdout and "set_memory_pool_limit" in result.stdout


def tensorrt_names(module: Path, stub_names: frozenset[str]) -> dict[str, int]:
    """Attributes the module touches that TensorRT's API declares (name -> a line)."""
    return {name: line for name, line in tensorrt_api.tensorrt_touches(module).items()
            if name in stub_names}


@pytest.fixture(scope="module")
def names(api_cache: Path) -> tuple[frozenset[str], frozenset[str]]:
    return (tensorrt_api.stub_names(tensorrt_api.stubs_dir(api_cache)),
            tensorrt_api.bound_names(tensorrt_api.bindings_so(api_cache)))


@pytest.mark.parametrize("module", TENSORRT_MODULES, ids=lambda p: p.name)
def test_names_on_the_tensorrt_11_path_are_bound_by_11(module: Path, names) -> None:
    stub_names, bound = names
    touched = tensorrt_names(module, stub_names)
    missing = {f"{name} (line {line})" for name, line in touched.items() if name not in bound}
    assert not missing, f"{module.name} uses names TensorRT 11 does not bind: {missing}"


def test_the_name_collector_sees_the_calls_that_matter(names) -> None:
    touched = set(tensorrt_names(TENSORRT_MODULES[0], names[0])) | \
        set(tensorrt_names(TENSORRT_MODULES[1], names[0]))
    for name in ("create_network", "parse_from_file", "build_serialized_network",
                 "set_memory_pool_limit", "create_timing_cache", "deserialize_cuda_engine",
                 "set_tensor_address", "execute_async_v3", "get_tensor_profile_shape"):
        assert name in touched


def test_the_11_check_fails_on_the_weak_typing_api(names) -> None:
    """The legacy module's precision controls are what TensorRT 11 removed: the same check
    over it must name them (so a weak-typing call slipping into trt.py would be caught)."""
    stub_names, bound = names
    touched = tensorrt_names(LEGACY_MODULE, stub_names)
    missing = {name for name in touched if name not in bound}
    assert {"OBEY_PRECISION_CONSTRAINTS", "set_output_type", "FP16"} <= missing


def test_only_the_engine_layer_imports_the_legacy_module() -> None:
    importers = [path.relative_to(REPO) for path in PACKAGE.rglob("*.py")
                 if path != LEGACY_MODULE and "trt_legacy" in path.read_text()]
    assert importers == [Path("spartan_deploy/engine/trt.py")]


def test_a_stubs_only_install_is_not_taken_for_tensorrt(tmp_path: Path, monkeypatch) -> None:
    """tensorrt-stubs leaves ``tensorrt/__init__.pyi``, which imports as an empty namespace
    package; that must read as 'TensorRT absent' (exit 4 and the hand-off), not crash."""
    from spartan_deploy.engine.trt import import_tensorrt

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("__version__: str\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    assert import_tensorrt() is None


def test_stub_repair_keeps_names_and_makes_valid_python() -> None:
    import ast

    broken = ("class P:\n"
              "    def f(self, in: list[int], out: list[int]) -> int: ...\n"
              "    def g(self, a: int, b: int = None, c: int) -> int: ...\n")
    repaired = tensorrt_api.repair_stub(broken)
    tree = ast.parse(repaired)
    assert {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)} == {"f", "g"}
    assert "c: int = ..." in repaired
