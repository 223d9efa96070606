"""TensorRT's own API, read without TensorRT: the type stubs and the names the 11.x bindings bind.

TensorRT cannot run on this project's machines, so our TensorRT code is checked against two
things PyPI does carry:

- ``tensorrt-stubs`` (pure Python): type stubs of the TensorRT 10.13 Python API, for mypy.
- ``tensorrt-cu13-bindings``: TensorRT 11.x's real Python extension module. It cannot be
  imported without TensorRT's libraries, but every name pybind11 binds (classes, methods,
  properties, enum members) is a NUL-terminated string in its read-only data.

Both wheels are fetched once into a cache (``python -m tests.engine.tensorrt_api --fetch``,
run by CI before pytest) and never at test time. ``pip download --no-deps`` because both
wheels depend on NVIDIA's placeholder packages, which download from an index this project
cannot reach.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

STUBS = "tensorrt-stubs==10.13.0.35.1"
BINDINGS_11 = "tensorrt-cu13-bindings==11.4.0.106"
CACHE_ENV = "SPARTAN_TENSORRT_API"
_IDENTIFIER_TAIL = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*$")


def cache_dir() -> Path:
    """Where the wheels are unpacked: $SPARTAN_TENSORRT_API, else the user's cache. Outside
    the clone, so CI's fresh clones on one machine share one download."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spartan-deploy" / "tensorrt-api"


def stubs_dir(cache: Path | None = None) -> Path:
    """The folder holding ``tensorrt/`` and ``tensorrt_bindings/`` stub packages (mypy_path)."""
    return (cache or cache_dir()) / "stubs"


def bindings_so(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "bindings-11" / "tensorrt_bindings" / "tensorrt.so"


def missing_reason(cache: Path | None = None) -> str | None:
    """Why the check cannot run here, or None when both parts are in the cache."""
    cache = cache or cache_dir()
    if not (stubs_dir(cache) / "tensorrt_bindings" / "tensorrt.pyi").is_file():
        return (f"TensorRT stubs not in {cache}; run `python -m tests.engine.tensorrt_api "
                "--fetch` once (needs PyPI)")
    if not bindings_so(cache).is_file():
        return (f"TensorRT 11 bindings not in {cache}; run `python -m tests.engine.tensorrt_api "
                "--fetch` once (needs PyPI)")
    return None


def fetch(cache: Path | None = None) -> Path:
    """Download both wheels (without their placeholder dependencies) and unpack them."""
    cache = cache or cache_dir()
    if missing_reason(cache) is None:
        return cache
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for requirement in (STUBS, BINDINGS_11):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", str(wheels), requirement], check=True)
    _unpack(_wheel(wheels, "tensorrt_stubs"), stubs_dir(cache), repair=True)
    _unpack(_wheel(wheels, "tensorrt_cu13_bindings"), cache / "bindings-11")
    return cache


def _wheel(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}-*.whl"))
    if not found:
        raise FileNotFoundError(f"no {prefix} wheel in {folder}")
    return found[-1]


def _unpack(wheel: Path, target: Path, repair: bool = False) -> None:
    # Unpack beside the target and rename, so an interrupted fetch leaves no half folder.
    if target.is_dir():
        return
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(partial)
    if repair:
        for pyi in partial.rglob("*.pyi"):
            pyi.write_text(repair_stub(pyi.read_text()))
    partial.rename(target)


def repair_stub(text: str) -> str:
    """Make the generated stubs valid Python, changing no name we check.

    tensorrt-stubs 10.13.0.35.1 (made by pybind11-stubgen) has two kinds of invalid lines:
    plugin methods with a parameter named ``in`` (a keyword; renamed ``in_``) and
    ``INetworkDefinition.add_scale_nd`` with a required parameter after defaulted ones (it
    gets a default). Neither mypy nor ``ast`` reads the file otherwise.
    """
    text = re.sub(r"\bin: ", "in_: ", text)
    lines = text.splitlines()
    for _ in range(len(lines)):
        try:
            ast.parse("\n".join(lines))
            break
        except SyntaxError as err:
            if err.lineno is None or "follows default argument" not in str(err.msg):
                raise
            lines[err.lineno - 1] = _default_trailing_parameters(lines[err.lineno - 1])
    return "\n".join(lines) + "\n"


def _default_trailing_parameters(line: str) -> str:
    """``def f(a, b: T = None, c: int) -> R:`` -> ``... c: int = ...) -> R:``."""
    head, _, rest = line.partition("(")
    params, _, tail = rest.rpartition(") ->")
    parts, depth, start = [], 0, 0
    for i, char in enumerate(params):
        depth += char in "[(" and 1 or char in "])" and -1 or 0
        if char == "," and depth == 0:
            parts.append(params[start:i])
            start = i + 1
    parts.append(params[start:])
    seen_default = False
    for i, part in enumerate(parts):
        if "=" in part:
            seen_default = True
        elif seen_default and part.strip() and not part.strip().startswith("*"):
            parts[i] = part + " = ..."
    return f"{head}({','.join(parts)}) ->{tail}"


def bound_names(so_path: Path) -> frozenset[str]:
    """Every identifier the extension module can bind, read from its C strings.

    The linker merges a string into another that ends with it ("Logger" lives inside
    "ILogger"), so a bound name is any identifier tail of a stored string. A name absent
    from this set is certainly not bound; the check is per name, not per class.
    """
    names: set[str] = set()
    for chunk in so_path.read_bytes().split(b"\x00"):
        match = _IDENTIFIER_TAIL.search(chunk)
        if match:
            word = match.group(0).decode()
            names.update(word[i:] for i in range(len(word)))
    python_part = so_path.with_name("__init__.py")  # names the package adds in Python
    if python_part.is_file():
        names.update(_defined_names(ast.parse(python_part.read_text())))
    return frozenset(names)


def stub_names(stubs: Path) -> frozenset[str]:
    """Every name the TensorRT stubs declare: module members, classes, their members."""
    names: set[str] = set()
    for pyi in stubs.rglob("*.pyi"):
        names.update(_defined_names(ast.parse(pyi.read_text())))
    return frozenset(names)


def _defined_names(tree: ast.AST) -> Iterable[str]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr
        elif isinstance(node, ast.ImportFrom):
            yield from (alias.asname or alias.name for alias in node.names)


# Where TensorRT objects come from in our code: the module itself (``import tensorrt as
# trt``, ``require_tensorrt()``/``import_tensorrt()``, a ``ModuleType`` parameter), anything
# annotated with a ``trt.`` type, and anything computed from those.
_SOURCES = frozenset({"require_tensorrt", "import_tensorrt"})


def tensorrt_touches(source: Path) -> dict[str, int]:
    """TensorRT attribute names a module reads, calls or sets, with a line of each.

    A small taint analysis over the module's functions: a name (or ``self.attr``) holding a
    TensorRT module or object taints whatever is assigned from it, and every ``x.name``
    whose ``x`` is tainted, plus ``hasattr/getattr(x, "name")``, is a touch. Our own
    objects (a manifest's ``precision``, a tensor's ``shape``) are not.
    """
    tree = ast.parse(source.read_text(), str(source))
    tainted = _tainted_self_attributes(tree)
    touches: dict[str, int] = {}
    for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                             ast.AsyncFunctionDef))):
        names = _tainted_locals(func, tainted)
        for node in ast.walk(func):
            if isinstance(node, ast.Attribute) and _is_tainted(node.value, names, tainted):
                touches.setdefault(node.attr, node.lineno)
            elif isinstance(node, ast.Call) and _is_name(node.func, "hasattr", "getattr") \
                    and len(node.args) >= 2 and _is_tainted(node.args[0], names, tainted) \
                    and isinstance(node.args[1], ast.Constant):
                touches.setdefault(str(node.args[1].value), node.lineno)
    return touches


def _annotated_tensorrt(annotation: ast.AST | None) -> bool:
    text = ast.unparse(annotation) if annotation is not None else ""
    return "trt." in text or "ModuleType" in text


def _tainted_self_attributes(tree: ast.AST) -> set[str]:
    """``self.x`` attributes annotated with a TensorRT type anywhere in the module."""
    return {node.target.attr for node in ast.walk(tree)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute)
            and _annotated_tensorrt(node.annotation)}


def _tainted_locals(func: ast.FunctionDef | ast.AsyncFunctionDef,
                    self_attrs: set[str]) -> set[str]:
    args = [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]
    names = {a.arg for a in args if _annotated_tensorrt(a.annotation)}
    for _ in range(3):  # assignments may chain: builder -> network -> layer
        for node in ast.walk(func):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update(alias.asname or alias.name for alias in node.names
                             if "tensorrt" in alias.name or
                             (isinstance(node, ast.ImportFrom) and
                              "tensorrt" in (node.module or "")))
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.For, ast.comprehension)):
                value = node.iter if isinstance(node, (ast.For, ast.comprehension)) \
                    else node.value
                if value is not None and _mentions(value, names, self_attrs):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names.update(_target_names(targets))
    return names


def _target_names(targets: list[ast.expr]) -> set[str]:
    """Plain names bound by assignment targets (``a``, ``a, b``); ``self.x`` and ``d[k]``
    bind no local name."""
    found: set[str] = set()
    for target in targets:
        if isinstance(target, ast.Name):
            found.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            found |= _target_names(list(target.elts))
    return found


def _mentions(expr: ast.AST, names: set[str], self_attrs: set[str]) -> bool:
    return any(_is_tainted(n, names, self_attrs) or
               (isinstance(n, ast.Call) and _is_name(n.func, *_SOURCES))
               for n in ast.walk(expr))


def _is_tainted(expr: ast.AST, names: set[str], self_attrs: set[str]) -> bool:
    if isinstance(expr, ast.Name):
        return expr.id in names
    if isinstance(expr, ast.Attribute) and _is_name(expr.value, "self"):
        return expr.attr in self_attrs
    if isinstance(expr, (ast.Attribute, ast.Subscript)):
        return _is_tainted(expr.value, names, self_attrs)
    if isinstance(expr, ast.Call):
        return _is_tainted(expr.func, names, self_attrs)
    return False


def _is_name(node: ast.AST, *names: str) -> bool:
    return isinstance(node, ast.Name) and node.id in names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", action="store_true", help="download into the cache")
    args = parser.parse_args(argv)
    if args.fetch:
        print(f"TensorRT API files in {fetch()}")
    reason = missing_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
