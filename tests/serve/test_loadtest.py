"""``run_loadtest`` / ``spartan loadtest`` against the real server, with bounded requests:
parity first, per-level figures consistent with the server's own counters, a server killed
mid-test ends the test with a non-zero exit and what succeeded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spartan_deploy.errors import ParityError, UsageError
from spartan_deploy.serve.choices import Protocol
from spartan_deploy.serve.client import loopback_url
from spartan_deploy.serve.loadtest import LoadOptions, run_loadtest
from tests.serve.conftest import free_ports

MODEL = "tiny-spartan-fp32"


def _options(repo: Path, **changes) -> LoadOptions:
    base = dict(concurrency=(1, 4), duration_s=5.0, warmup_s=0.2, max_requests=30,
                repository=repo, check_images=8)
    base.update(changes)
    return LoadOptions(**base)


@pytest.mark.parametrize("protocol", [Protocol.HTTP, Protocol.GRPC])
def test_levels_agree_with_the_servers_counters(served, protocol):
    server, result = served
    url = server.endpoints.http if protocol is Protocol.HTTP else server.endpoints.grpc
    report = run_loadtest(url, MODEL, _options(result.folder, protocol=protocol))
    assert report.aborted is None
    assert report.parity.comparison.max_abs_diff <= 1e-5
    assert report.parity.comparison.samples == 8
    assert [lv.concurrency for lv in report.levels] == [1, 4]
    for level in report.levels:
        assert level.errors == 0 and 30 <= level.requests < 30 + level.concurrency
        assert level.latency_ms["p50"] <= level.latency_ms["p90"] <= level.latency_ms["p99"]
        assert level.throughput > 0
        counts = level.server
        assert counts is not None and counts.executions >= 1
        # Every request the server ran sits in exactly one executed batch.
        assert sum(size * n for size, n in counts.batches.items()) == counts.inferences
        assert counts.inferences > 0
    assert set(report.levels[0].server.batches) == {1}  # one client: nothing to batch
    assert report.to_dict()["levels"][1]["server"]["inferences"] == \
        report.levels[1].server.inferences


def test_parity_failure_stops_before_any_load(served, pool_onnx):
    server, _ = served
    options = _options(None, reference=pool_onnx)
    with pytest.raises(ParityError, match="differs from"):
        run_loadtest(server.endpoints.http, MODEL, options)


def test_parity_needs_a_reference(served):
    server, _ = served
    with pytest.raises(UsageError, match="--repository"):
        run_loadtest(server.endpoints.http, MODEL, _options(None))


@pytest.mark.parametrize("url", ["10.0.0.1:8000", "example.com:8000", "http://192.168.1.2:80"])
def test_only_loopback_addresses(url):
    with pytest.raises(UsageError, match="loopback"):
        loopback_url(url)


@pytest.mark.parametrize("url, expected", [
    ("127.0.0.1:8000", "127.0.0.1:8000"), ("http://localhost:8001/", "localhost:8001"),
    ("[::1]:8000", "[::1]:8000")])
def test_loopback_urls(url, expected):
    assert loopback_url(url) == expected


def test_killing_the_server_ends_the_loadtest_with_a_summary(triton_install, pool_onnx,
                                                             tmp_path):
    from spartan_deploy.serve import write_repository
    from spartan_deploy.serve.client import server_counts, sync_client
    from spartan_deploy.serve.server import ServeOptions, TritonServer

    repo = tmp_path / "repo"
    write_repository([pool_onnx], repo)
    server = TritonServer(repo, ServeOptions(*free_ports()), triton_install)
    server.start()
    try:
        load = subprocess.Popen(
            [sys.executable, "-m", "spartan_deploy", "loadtest", server.endpoints.http,
             "pool-fp32", "--repository", str(repo), "--concurrency", "2", "--duration",
             "120", "--warmup", "0", "--check-images", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        client = sync_client(server.endpoints.http, Protocol.HTTP)
        deadline = time.monotonic() + 90
        # Kill once the load is really running (the server has answered load requests).
        while server_counts(client, "pool-fp32", Protocol.HTTP).inferences < 50:
            assert load.poll() is None and time.monotonic() < deadline, load.stdout.read()
            time.sleep(0.2)
        server.process.send_signal(signal.SIGKILL)
        output, _ = load.communicate(timeout=60)
    finally:
        server.stop()  # also ends the stubs the killed server left behind
    assert load.returncode == 5, output
    assert "stopped answering" in output and "(cut short)" in output
