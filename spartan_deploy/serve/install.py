"""Finding a Triton server: a system ``tritonserver`` when there is one, else the binary
shipped in the ``nvidia-pytriton`` wheel (the ``serve`` extra), and preparing what the
latter needs to run (its libraries, a Python backend folder with the stub of this Python).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

from spartan_deploy.errors import MissingDependencyError, UsageError
from spartan_deploy.serve.errors import SERVE_EXTRA_HINT, ServeError
from spartan_deploy.serve.python_models.triton_model import ENV_SITE_PACKAGES

SYSTEM_LOCATIONS = (Path("/opt/tritonserver/bin/tritonserver"),)
_PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB = "triton_python_backend_stub"


@dataclasses.dataclass(frozen=True)
class ServerInstall:
    """A server binary and where its backends and libraries are.

    ``bundled``: the nvidia-pytriton copy, whose Python backend folder is assembled per run
    (the wheel keeps one stub per Python version beside it, not in it).
    """

    binary: Path
    backends: Path
    bundled: bool
    library_dirs: tuple[Path, ...] = ()

    @property
    def backend_names(self) -> frozenset[str]:
        if not self.backends.is_dir():
            return frozenset()
        return frozenset(p.name for p in self.backends.iterdir() if p.is_dir())

    @property
    def has_onnxruntime(self) -> bool:
        return "onnxruntime" in self.backend_names

    def describe(self) -> str:
        kind = "nvidia-pytriton's bundled server" if self.bundled else "system tritonserver"
        return f"{kind} {self.binary} (backends: {', '.join(sorted(self.backend_names))})"


def find_server(explicit: Path | None = None) -> ServerInstall:
    """``explicit``, else ``tritonserver`` on PATH or in /opt/tritonserver, else the
    nvidia-pytriton copy; a one-line error naming the extra when there is none."""
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UsageError(f"--server {str(path)!r} is not an executable file; give the "
                             "path of a tritonserver binary")
        return _system_install(path)
    found = shutil.which("tritonserver")
    for candidate in ([Path(found)] if found else []) + list(SYSTEM_LOCATIONS):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return _system_install(candidate)
    bundled = _bundled_install()
    if bundled is None:
        raise MissingDependencyError(
            f"no Triton server found: no tritonserver on PATH or in /opt/tritonserver, and "
            f"nvidia-pytriton is not installed; {SERVE_EXTRA_HINT} or run inside NVIDIA's "
            "tritonserver container")
    return bundled


def _system_install(binary: Path) -> ServerInstall:
    backends = binary.resolve().parent.parent / "backends"
    return ServerInstall(binary, backends, bundled=False)


def _bundled_install() -> ServerInstall | None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    binary = package / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        return None
    libs = package.parent / "nvidia_pytriton.libs"
    return ServerInstall(binary, package / "tritonserver" / "backends", bundled=True,
                         library_dirs=(libs,) if libs.is_dir() else ())


def prepare_backends(install: ServerInstall, workdir: Path) -> Path:
    """The backend folder to pass to the server. The bundled server's Python backend gets
    the stub built for this interpreter's Python version, checked to start."""
    if not install.bundled:
        return install.backends
    source = install.backends / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.binary.parent.parent / "python_backend_stubs" / version / STUB
    if not stub.is_file():
        raise ServeError(f"nvidia-pytriton has no Python backend stub for Python {version}; "
                         "use Python 3.8-3.13")
    target = workdir / "backends" / "python"
    target.mkdir(parents=True)
    for name in _PYTHON_BACKEND_FILES:
        (target / name).symlink_to(source / name)
    shutil.copy2(stub, target / STUB)
    _check_stub(target / STUB, server_environment(install))
    return target.parent


def _check_stub(stub: Path, env: dict[str, str]) -> None:
    """Run the stub bare: it loads (and complains about its arguments) or names the shared
    library it lacks, which is a clearer error than a model that never loads."""
    result = subprocess.run([str(stub)], env=env, capture_output=True, text=True, timeout=30,
                            check=False)
    marker = "error while loading shared libraries:"
    if marker in result.stderr:
        missing = result.stderr.split(marker, 1)[1].split(":")[0].strip()
        raise MissingDependencyError(
            f"Triton's Python backend stub cannot start: {missing} is missing (the stub "
            f"embeds the system's libpython{sys.version_info.major}.{sys.version_info.minor});"
            f" install it (e.g. apt-get install libpython{sys.version_info.major}."
            f"{sys.version_info.minor}) or run inside NVIDIA's tritonserver container")


def server_environment(install: ServerInstall) -> dict[str, str]:
    """The server's environment: its libraries first on the loader path, and this Python's
    site-packages named for the Python-backend models (see ``triton_model.use_environment``)."""
    env = dict(os.environ)
    if install.library_dirs:
        dirs = [str(d) for d in install.library_dirs]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            dirs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    env[ENV_SITE_PACKAGES] = os.pathsep.join(site_packages())
    return env


def site_packages() -> list[str]:
    """Where this interpreter's packages live, spartan_deploy's own folder first (a source
    checkout installed in editable mode is found through it)."""
    import spartan_deploy

    own = str(Path(spartan_deploy.__file__).resolve().parent.parent)
    paths = [own, *site.getsitepackages()]
    user = site.getusersitepackages()
    if isinstance(user, str) and Path(user).is_dir():
        paths.append(user)
    return list(dict.fromkeys(paths))
