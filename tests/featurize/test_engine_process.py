"""Tests of the parent-child protocol of engines run in a child process.

The children here are plain forked functions that follow the protocol, so
every failure mode (an abort after the result, a crash before it, an error
reply, a hang) is exercised without loading vLLM.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import pytest

from gfm import storage
from gfm.featurize.engine_process import (
    EngineProcessClient,
    EngineProcessError,
    redirect_output,
    send_error,
    serve_requests,
)

DIM = 4


def _embed(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), 1.0, 2.0, 3.0] for t in texts], dtype=np.float32)


def _child(conn, mode: str, log_path: str | None = None) -> None:
    if log_path is not None:
        redirect_output(log_path)
        print("loading weights from model.safetensors", flush=True)
    if mode == "load_error":
        try:
            raise OSError("weights are missing")
        except OSError as error:
            send_error(conn, error)
        return
    if mode == "crash_on_load":
        os._exit(3)
    conn.send({"status": "ready", "dim": DIM})
    if mode == "ok":
        serve_requests(conn, _embed)
        return
    if mode == "abort_at_exit":
        serve_requests(conn, _embed)
        os._exit(134)
    if mode == "embed_error":
        serve_requests(conn, lambda texts: 1 / 0)
        return

    request = conn.recv()
    if mode == "abort_after_result":
        storage.write_array(request["path"], _embed(request["texts"]))
        os._exit(134)
    if mode == "crash_before_result":
        os._exit(134)
    if mode == "crash_with_log":
        print("RuntimeError: CUDA out of memory", file=sys.stderr, flush=True)
        os._exit(1)
    if mode == "hang":
        time.sleep(60)


def _start_process(tmp_path, mode: str, request_timeout_s: float = 30.0,
                   with_log: bool = False):
    """Start a child in ``mode``; return its client and its process."""
    workdir = tmp_path / "results"
    workdir.mkdir()
    log_path = str(workdir / "engine.log") if with_log else None
    # Fork, because a spawned child could not import this test module.
    context = multiprocessing.get_context("fork")
    conn, child_conn = context.Pipe()
    process = context.Process(target=_child, args=(child_conn, mode, log_path))
    process.start()
    child_conn.close()
    client = EngineProcessClient(process, conn, workdir, request_timeout_s, log_path=log_path)
    return client, process


def _start(tmp_path, mode: str, request_timeout_s: float = 30.0) -> EngineProcessClient:
    return _start_process(tmp_path, mode, request_timeout_s)[0]


def test_client_returns_results_in_order(tmp_path):
    client = _start(tmp_path, "ok")

    ready = client.wait_ready(30)
    first = client.request(["a", "abc"])
    second = client.request(["abcd"])
    client.stop()

    assert ready["dim"] == DIM
    assert first[:, 0].tolist() == [1.0, 3.0]
    assert second[:, 0].tolist() == [4.0]
    assert not (tmp_path / "results").exists()


def test_client_accepts_result_written_before_abort(tmp_path, gfm_logs):
    client = _start(tmp_path, "abort_after_result")
    client.wait_ready(30)

    matrix = client.request(["ab", "c"])

    assert matrix.shape == (2, DIM)
    assert matrix[:, 0].tolist() == [2.0, 1.0]
    assert "using its complete result file" in gfm_logs.text
    with pytest.raises(EngineProcessError,
                       match=r"closed: engine process \d+ exited with code 134 while "
                             r"embedding request 0"):
        client.request(["abc"])
    assert client.pid is None
    client.stop()


def test_client_dead_child_raises_on_send(tmp_path):
    client, process = _start_process(tmp_path, "ok")
    client.wait_ready(30)
    # As an out-of-memory kill would: the child is gone before the next request.
    os.kill(process.pid, signal.SIGKILL)
    process.join()

    with pytest.raises(EngineProcessError,
                       match=r"was killed by SIGKILL \(exit code -9\) \((BrokenPipe|"
                             r"ConnectionReset)Error.*while embedding request 0") as error:
        client.request(["abc"])

    assert not isinstance(error.value.__cause__, EngineProcessError)
    assert client.pid is None
    with pytest.raises(EngineProcessError, match="closed: .*killed by SIGKILL"):
        client.request(["abc"])


def test_client_error_quotes_child_log(tmp_path, capsys):
    client = _start_process(tmp_path, "crash_with_log", with_log=True)[0]
    client.wait_ready(30)

    with pytest.raises(EngineProcessError, match="exited with code 1 while embedding") as error:
        client.request(["abc"])

    assert "last lines of its log:" in str(error.value)
    assert "RuntimeError: CUDA out of memory" in str(error.value)
    assert "loading weights from model.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_client_ignores_abort_after_stop(tmp_path, gfm_logs):
    client = _start(tmp_path, "abort_at_exit")
    client.wait_ready(30)
    matrix = client.request(["abc"])

    client.stop()

    assert matrix[0, 0] == 3.0
    assert "exited with code 134 after its last result; ignored" in gfm_logs.text


def test_client_crash_before_result_raises(tmp_path):
    client = _start(tmp_path, "crash_before_result")
    client.wait_ready(30)

    with pytest.raises(EngineProcessError, match="exited with code 134 while embedding"):
        client.request(["abc"])
    with pytest.raises(EngineProcessError, match="closed"):
        client.request(["abc"])


def test_client_reports_child_errors(tmp_path):
    client = _start(tmp_path, "embed_error")
    client.wait_ready(30)

    with pytest.raises(EngineProcessError, match="ZeroDivisionError"):
        client.request(["abc"])


def test_client_load_error_raises(tmp_path):
    client = _start(tmp_path, "load_error")

    with pytest.raises(EngineProcessError, match="loading the model: OSError"):
        client.wait_ready(30)
    assert client.pid is None


def test_client_crash_on_load_raises(tmp_path):
    client = _start(tmp_path, "crash_on_load")

    with pytest.raises(EngineProcessError, match="exited with code 3 while loading"):
        client.wait_ready(30)


def test_client_timeout_kills_child(tmp_path):
    client = _start(tmp_path, "hang", request_timeout_s=1.0)
    client.wait_ready(30)
    pid = client.pid

    with pytest.raises(EngineProcessError, match="timed out after 1 s"):
        client.request(["abc"])

    assert client.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
