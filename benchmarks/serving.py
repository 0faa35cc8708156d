"""Latency and throughput of the recommendation server on loopback.

For each catalog (MovieLens-1M, and a synthetic catalog of 1,000,000 items)
the script starts ``gfm serve`` on 127.0.0.1. It drives the server with
``wrk``, a real HTTP load generator (``apt-get install wrk``), at concurrency
1, 8 and 32, with V1 requests of one instance each. In the same run it times
the same scoring code called in-process (``Recommender.recommend`` on parsed
requests), the lower bound without HTTP. The 1M catalog runs with exact search and with the
IVF index. A last table times one query in-process over catalogs of growing
size, exact against IVF, to show where exact search becomes too slow.

Every load phase is bounded by ``--seconds``, and every server is stopped
at the end.

Usage::

    python benchmarks/serving.py --seconds 10
    python benchmarks/serving.py --ml1m-bundle BUNDLE_DIR  # reuse a bundle
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gfm.serving.config import ServingConfig
from gfm.serving.recommender import Recommender
from gfm.serving.request import parse_instances

# Reports p50/p95/p99 in microseconds, requests per second and errors as one
# JSON line. Bodies are read from a file, one JSON body per line, and sent in
# turn; each wrk thread starts at a different offset.
WRK_SCRIPT = r"""
local bodies = {}
local position = 0
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
end
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  position = offset or 0
  wrk.method = "POST"
  wrk.headers["content-type"] = "application/json"
end
function request()
  position = position + 1
  return wrk.format(nil, nil, nil, bodies[(position % #bodies) + 1])
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(95), latency:percentile(99), latency.max,
    errors.connect + errors.read + errors.write + errors.status + errors.timeout))
end
"""

CONCURRENCY = (1, 8, 32)

# torch's own default, read before any variant changes it.
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request_mix(recommender: Recommender, product: str, count: int, seed: int) -> list[dict]:
    """Build a mix of instances like live traffic: known users, users who send
    only a recent history, and a few cold users (popularity fallback)."""
    from gfm import storage

    rng = random.Random(seed)
    histories = storage.read_table(storage.join(recommender.bundle.uri, "histories.parquet"),
                                   columns=["user_id"])
    users = sorted(set(histories.column("user_id").to_pylist()))
    items = recommender.catalogs[product].item_ids
    instances = []
    for position in range(count):
        draw = rng.random()
        if users and draw < 0.5:
            instance = {"product": product, "k": 10, "user_id": rng.choice(users)}
        elif draw < 0.9:
            instance = {"product": product, "k": 10,
                        "history": rng.sample(items, min(10, len(items)))}
        else:
            instance = {"product": product, "k": 10, "user_id": f"cold-user-{position}"}
        instances.append(instance)
    return instances


def time_in_process(recommender: Recommender, instances: list[dict], seconds: float) -> dict:
    """Call the scoring code directly, one instance per call, for ``seconds``,
    with the torch threads the server would use."""
    config = recommender.config
    torch.set_num_threads(config.torch_threads or TORCH_DEFAULT_THREADS)
    parsed = [parse_instances([i], recommender.product_types, max_instances=1,
                              max_k=config.max_k, default_k=config.default_k,
                              exclude_consumed=config.exclude_consumed)
              for i in instances]
    latencies = []
    deadline = time.perf_counter() + seconds
    position = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        recommender.recommend(parsed[position % len(parsed)])
        latencies.append(time.perf_counter() - started)
        position += 1
    micros = np.asarray(latencies) * 1e6
    return {"requests": len(latencies), "seconds": float(sum(latencies)),
            "p50_us": float(np.percentile(micros, 50)),
            "p95_us": float(np.percentile(micros, 95)),
            "p99_us": float(np.percentile(micros, 99)),
            "max_us": float(micros.max()), "errors": 0}


class Server:
    """``gfm serve`` in a child process on 127.0.0.1."""

    def __init__(self, bundle: str, config: dict, log_path: Path):
        self.port = free_port()
        self.log = open(log_path, "w")
        command = [sys.executable, "-m", "gfm.cli", "serve", "--bundle", bundle,
                   "--port", str(self.port), "--config", json.dumps(config)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float) -> None:
        from gfm.serving.client import RecommendClient

        with RecommendClient(self.url) as client:
            deadline = time.monotonic() + timeout_s
            while not client.is_ready():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server on {self.url} did not become ready; "
                                       f"see {self.log.name}")
                time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def run_wrk(url: str, bodies: Path, script: Path, connections: int, seconds: float) -> dict:
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s",
               "--timeout", "30s", "-s", str(script), url, "--", str(bodies)]
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=seconds + 60).stdout
    line = [row for row in output.splitlines() if row.startswith("{")][-1]
    return json.loads(line)


def write_bodies(instances: list[dict], path: Path) -> None:
    with open(path, "w") as out:
        out.writelines(json.dumps({"instances": [instance]}) + "\n" for instance in instances)


def benchmark_catalog(name: str, bundle: str, product: str, variants: dict[str, dict],
                      seconds: float, workdir: Path, script: Path) -> list[dict]:
    rows = []
    for variant, config in variants.items():
        recommender = Recommender.load(bundle, ServingConfig.from_dict(
            dict(config, bundle_uri=bundle)))
        instances = request_mix(recommender, product, 2000, seed=0)
        bodies = workdir / f"{name}-{variant}.jsonl"
        write_bodies(instances, bodies)
        result = time_in_process(recommender, instances, seconds)
        rows.append(dict(result, catalog=name, variant=variant, mode="in-process",
                         concurrency=1))
        del recommender

        server = Server(bundle, config, workdir / f"{name}-{variant}.log")
        try:
            server.wait_ready(timeout_s=600)
            url = f"{server.url}/v1/models/gfm:predict"
            run_wrk(url, bodies, script, 8, min(seconds, 3))  # warm-up
            for connections in CONCURRENCY:
                result = run_wrk(url, bodies, script, connections, seconds)
                rows.append(dict(result, catalog=name, variant=variant, mode="http",
                                 concurrency=connections))
                print_row(rows[-1])
        finally:
            server.stop()
    return rows


def catalog_sweep(sizes: list[int], dim: int, queries: int, nprobe: int) -> None:
    """Time one query, exact against IVF, over clustered unit vectors.

    Exact search is timed before the IVF index is built, so faiss's OpenMP
    threads, which spin for a while after building, cannot slow it down.
    """
    from gfm.serving.ann import IVFIndex
    from gfm.serving.scoring import ProductCatalog

    rng = np.random.default_rng(0)
    print("\n| items | dim | exact p50 ms | exact p99 ms | ivf p50 ms | ivf p99 ms | "
          "ivf recall@10 | ivf build s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        centers = rng.standard_normal((max(10, size // 500), dim)).astype(np.float32)
        vectors = centers[rng.integers(0, len(centers), size)]
        vectors += 0.5 * rng.standard_normal(vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        users = vectors[rng.choice(size, queries)] + 0.3 * rng.standard_normal(
            (queries, dim)).astype(np.float32)
        users = torch.from_numpy(users / np.linalg.norm(users, axis=1, keepdims=True))
        ids = [str(i) for i in range(size)]

        exact = ProductCatalog("p", ids, ["item"] * size, vectors, np.ones(size))
        exact_ms, exact_rankings = time_queries(exact, users)
        started = time.perf_counter()
        ann = IVFIndex(vectors, nprobe=nprobe, threads=1)
        build_s = time.perf_counter() - started
        approximate = ProductCatalog("p", ids, ["item"] * size, vectors, np.ones(size),
                                     ann=ann)
        ivf_ms, ivf_rankings = time_queries(approximate, users)

        recall = np.mean([len(set(a.item_ids) & set(e.item_ids)) / 10
                          for a, e in zip(ivf_rankings, exact_rankings)])
        print(f"| {size} | {dim} | {np.percentile(exact_ms, 50):.2f} | "
              f"{np.percentile(exact_ms, 99):.2f} | {np.percentile(ivf_ms, 50):.2f} | "
              f"{np.percentile(ivf_ms, 99):.2f} | {recall:.3f} | {build_s:.1f} |", flush=True)
        del exact, approximate, ann


def time_queries(catalog, users: torch.Tensor) -> tuple[np.ndarray, list]:
    """Rank one user at a time; return the times in milliseconds and the rankings."""
    milliseconds = []
    rankings = []
    for row in range(users.shape[0]):
        started = time.perf_counter()
        rankings += catalog.top_k(users[row:row + 1], [10], [[]], [None])
        milliseconds.append((time.perf_counter() - started) * 1000)
    return np.asarray(milliseconds), rankings


def print_row(row: dict) -> None:
    rps = row["requests"] / row["seconds"] if row["seconds"] else 0.0
    print(f"| {row['catalog']} | {row['variant']} | {row['mode']} | {row['concurrency']} | "
          f"{row['p50_us'] / 1000:.2f} | {row['p95_us'] / 1000:.2f} | "
          f"{row['p99_us'] / 1000:.2f} | {rps:.0f} | {row['errors']} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="duration of each load phase, in seconds (default: 10)")
    parser.add_argument("--ml1m-bundle", default=None,
                        help="an existing MovieLens-1M serving bundle (default: train one)")
    parser.add_argument("--synthetic-items", type=int, default=1_000_000,
                        help="items of the synthetic catalog (default: 1000000)")
    parser.add_argument("--workdir", default=None, help="folder for bundles and logs")
    parser.add_argument("--catalogs", default="ml-1m,synthetic",
                        help="comma-separated catalogs to load-test: ml-1m, synthetic")
    parser.add_argument("--sweep-sizes", default="10000,100000,300000,1000000",
                        help="comma-separated catalog sizes of the exact-against-IVF table")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    from serving_bundles import ml1m_bundle, synthetic_bundle

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gfm-serving-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the "
          f"start; workdir {workdir}")

    catalogs = set(args.catalogs.split(","))
    print("| catalog | variant | mode | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    if "ml-1m" in catalogs:
        ml1m = args.ml1m_bundle or ml1m_bundle(workdir / "ml1m-bundle")
        rows += benchmark_catalog(
            "ml-1m", ml1m, "movie",
            {"exact": {}, "exact, torch default threads": {"torch_threads": 0}},
            args.seconds, workdir, script)
    if "synthetic" in catalogs:
        synthetic = synthetic_bundle(workdir / f"synthetic-{args.synthetic_items}-bundle",
                                     args.synthetic_items)
        rows += benchmark_catalog(
            f"synthetic-{args.synthetic_items}", synthetic, "item",
            {"exact": {}, "ivf": {"index": "ivf", "ann_min_items": 1}}, args.seconds,
            workdir, script)
    print("\nin-process rows:")
    for row in rows:
        if row["mode"] == "in-process":
            print_row(row)
    torch.set_num_threads(1)
    catalog_sweep([int(s) for s in args.sweep_sizes.split(",") if s], dim=128, queries=100,
                  nprobe=ServingConfig().ann_nprobe)
    (workdir / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
