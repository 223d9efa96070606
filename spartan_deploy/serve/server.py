"""``TritonServer``: start Triton on loopback over a repository, wait until it is ready,
stop it with everything it started.

The server runs in its own process group (so Ctrl-C in a terminal reaches us, not it, and
stopping the group also ends the Python-backend stub processes). Startup failures (a busy
port, a model that fails to load) become one-line errors read from the server's log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from spartan_deploy._validate import positive_float, positive_int
from spartan_deploy.errors import UsageError
from spartan_deploy.serve.choices import ConfigChoice
from spartan_deploy.serve.errors import ServeError
from spartan_deploy.serve.install import (
    ServerInstall, find_server, prepare_backends, server_environment)
from spartan_deploy.serve.plan import ModelPlan, plan_models

LOOPBACK = "127.0.0.1"
_POLL_S = 0.25
_LOAD_FAILED = re.compile(r"failed to load '([^']+)' version \d+: (.*)")
_NOISE = ("CudaDriverHelper", "NVML", "DCGM", "pinned memory", "CUDA", "GPU")


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    config: ConfigChoice = ConfigChoice.AUTO
    models: tuple[str, ...] = ()  # load only these (default: every model the server can run)
    startup_timeout_s: float = 180.0
    exit_timeout_s: int = 10
    server: Path | None = None  # an explicit tritonserver binary

    def __post_init__(self) -> None:
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port,
                 "--metrics-port": self.metrics_port}
        for flag, port in ports.items():
            positive_int(port, flag, 65535)
        if len(set(ports.values())) != 3:
            given = ", ".join(f"{flag} {port}" for flag, port in ports.items())
            raise UsageError(f"ports must differ, got {given}; give three different ports")
        positive_float(self.startup_timeout_s, "--timeout")
        positive_int(self.exit_timeout_s, "exit timeout")


@dataclasses.dataclass(frozen=True)
class Endpoints:
    http: str  # host:port, as tritonclient takes it
    grpc: str
    metrics: str

    def describe(self) -> str:
        return (f"HTTP http://{self.http}  gRPC {self.grpc}  metrics "
                f"http://{self.metrics}/metrics")


class TritonServer:
    """One server process over one repository (a context manager: start ... stop)."""

    def __init__(self, repository: str | Path, options: ServeOptions = ServeOptions(),
                 install: ServerInstall | None = None) -> None:
        self.repository = Path(repository).resolve()
        self.options = options
        self.install = install or find_server(options.server)
        self.native = _use_native(options.config, self.install)
        self.plans: list[ModelPlan] = select_models(
            plan_models(self.repository, self.install, self.native), options.models)
        self.endpoints = Endpoints(f"{LOOPBACK}:{options.http_port}",
                                   f"{LOOPBACK}:{options.grpc_port}",
                                   f"{LOOPBACK}:{options.metrics_port}")
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None

    @property
    def loaded(self) -> list[str]:
        return [p.name for p in self.plans if p.runnable]

    @property
    def skipped(self) -> list[ModelPlan]:
        return [p for p in self.plans if not p.runnable]

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "server.log" if self.workdir else None

    def start(self) -> Endpoints:
        """Start the server and return once every loaded model is ready."""
        check_ports_free(self.options)
        self.workdir = Path(tempfile.mkdtemp(prefix="spartan-serve-"))
        backends = prepare_backends(self.install, self.workdir)
        with open(self.workdir / "server.log", "wb") as log:
            self.process = subprocess.Popen(
                self.command(backends), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=server_environment(self.install),
                start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self.endpoints

    def command(self, backends: Path) -> list[str]:
        o = self.options
        cmd = [str(self.install.binary), f"--model-repository={self.repository}",
               f"--backend-directory={backends}",
               f"--http-address={LOOPBACK}", f"--http-port={o.http_port}",
               f"--grpc-address={LOOPBACK}", f"--grpc-port={o.grpc_port}",
               f"--metrics-address={LOOPBACK}", f"--metrics-port={o.metrics_port}",
               "--allow-gpu-metrics=false", "--model-control-mode=explicit",
               # Our configs are complete; auto-completion would start every Python model
               # once more just to ask it for its config.
               "--disable-auto-complete-config", f"--exit-timeout-secs={o.exit_timeout_s}"]
        cmd += [f"--load-model={name}" for name in self.loaded]
        if not self.native:
            cmd.append("--model-config-name=cpu")
        return cmd

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.startup_timeout_s
        url = f"http://{self.endpoints.http}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServeError(f"Triton exited during startup: {self._startup_error()}; "
                                 f"full log: {self.log_path}")
            if _http_ok(url):
                return
            time.sleep(_POLL_S)
        raise ServeError(f"Triton was not ready after {self.options.startup_timeout_s:g} s "
                         f"(models still loading?); raise --timeout or see {self.log_path}")

    def _startup_error(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path else ""
        return startup_error(text, self.options)

    def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, keep_log: bool = False) -> None:
        """SIGTERM the process group, wait, SIGKILL what is left; remove the work folder."""
        if self.process is not None:
            stop_group(self.process, self.options.exit_timeout_s + 5)
        if self.workdir is not None and not keep_log:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def select_models(plans: list[ModelPlan], wanted: tuple[str, ...]) -> list[ModelPlan]:
    """Only the models named (and what the named ensembles chain); all when none named."""
    if not wanted:
        return plans
    by_name = {p.name: p for p in plans}
    chosen: set[str] = set()
    for name in wanted:
        plan = by_name.get(name)
        if plan is None:
            raise UsageError(f"--load-model {name!r} is not in the repository; it holds "
                             f"{', '.join(sorted(by_name))}")
        if not plan.runnable:
            raise UsageError(f"--load-model {name!r} cannot run on this server: {plan.reason}")
        chosen.add(name)
        if plan.config is not None and plan.config.platform == "ensemble":
            chosen.update(step.model_name for step in plan.config.ensemble_scheduling.step)
    return [p if p.name in chosen or not p.runnable
            else dataclasses.replace(p, runnable=False, reason="not asked for (--load-model)")
            for p in plans]


def serve_until_stopped(server: TritonServer,
                        on_ready: Callable[[Endpoints], None] | None = None) -> None:
    """Start ``server``, call ``on_ready``, and block while it runs. Ctrl-C or SIGTERM (also
    during startup) stop it cleanly and return; a server that exits by itself is a
    :class:`ServeError` with its log's reason. The server is stopped on every way out."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
        if on_ready is not None:
            on_ready(server.endpoints)
        while server.poll() is None:
            time.sleep(_POLL_S)
        log = server.log_path.read_text(errors="replace") if server.log_path else ""
        raise ServeError(f"Triton exited by itself (code {server.poll()}): "
                         f"{startup_error(log, server.options)}; log: {server.log_path}")
    except KeyboardInterrupt:
        return
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave stubs behind.
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            server.stop(keep_log=server.poll() not in (None, 0))
        finally:
            signal.signal(signal.SIGINT, interrupt)
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _use_native(choice: ConfigChoice, install: ServerInstall) -> bool:
    if choice is ConfigChoice.NATIVE and not install.has_onnxruntime:
        raise UsageError(f"--config native needs Triton's onnxruntime backend, which "
                         f"{install.describe()} lacks; use --config cpu or NVIDIA's container")
    if choice is ConfigChoice.AUTO:
        return install.has_onnxruntime
    return choice is ConfigChoice.NATIVE


def check_ports_free(options: ServeOptions) -> None:
    """A one-line error for a port something already listens on (before starting)."""
    for flag, port in (("--http-port", options.http_port), ("--grpc-port", options.grpc_port),
                       ("--metrics-port", options.metrics_port)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR: a socket left in TIME_WAIT by an earlier run is not "busy".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                raise UsageError(f"{flag} {port} is already in use on {LOOPBACK}; choose a "
                                 f"free port with {flag} or stop what listens there") from None


def startup_error(log: str, options: ServeOptions) -> str:
    """The one line that says why the server stopped, from its log."""
    for line in log.splitlines():
        found = _LOAD_FAILED.search(line)
        if found:
            reason = found.group(2).replace("\\n", "\n").strip().splitlines()
            return f"model {found.group(1)!r} failed to load ({(reason or ['?'])[0][:300]})"
    if "already in use" in log or "Address in use" in log:
        return (f"a port was taken while it started (ports {options.http_port}, "
                f"{options.grpc_port}, {options.metrics_port}); choose others")
    errors = [line for line in log.splitlines()
              if line.startswith(("E", "error")) and not any(n in line for n in _NOISE)]
    return errors[-1][:300] if errors else "no error in its log"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_group(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """End a process started with ``start_new_session`` and everything in its group."""
    group = process.pid
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            process.wait()
    # Stubs outlive a server killed hard; none may stay behind.
    deadline = time.monotonic() + timeout_s
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in group_members(group):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members
