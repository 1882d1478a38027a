"""``msrec bench serve``: Predict latency and QPS over gRPC on loopback, beside the in-process floor.

For 1, 100 and 500 candidates per request at concurrency 1 and 8, the same inputs go (a) to
``msrec serve`` running in its own process on 127.0.0.1 through the official PredictionService
stub, and (b) straight to the SavedModel's ``serving_default`` function in this process (numpy in,
numpy out: the floor any server adds to). Requests are built and serialized once per size and sent
as bytes, so the gRPC numbers cover the round trip, the server's decoding, the model call and the
response, not the client's encoding (a Python client spends ~1 ms serializing 100 candidates; a C++
or Go client far less). Every loop is bounded by a request count. The in-process and gRPC requests
of one row go in alternating rounds, so the ratio does not move with the machine's speed between them.

Model: a pushed model found under ``--out``/serving/<name>/<version>; else the daily pipeline is
run on small generated data to push one there (``--models sarnet``, the default); ``--models toy``
uses the toy contract model instead.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from msrec.bench.machine import format_machine, machine_info
from msrec.signatures import WARMUP_FILE
from msrec.serving.tensors import fill_tensor_proto

SIZES = (1, 100, 500)
CONCURRENCY = (1, 8)
# requests measured per (size, concurrency): enough for a stable p99 without a long run
REQUESTS = {1: 600, 100: 300, 500: 100}
WARMUP_REQUESTS = 20
ROUNDS = 3  # each column measured in this many rounds, alternating with the others
RESULT_FILE = "bench_serve.json"
PIPELINE_DATE_DAYS = 2
PIPELINE_IMPRESSIONS_PER_DAY = 20_000
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
_LISTENING = re.compile(r"serving \S+ on (\S+):(\d+) ")


def _find_pushed_model(out: Path) -> tuple[str, Path] | None:
    serving = out / "serving"
    if not serving.is_dir():
        return None
    for model_dir in sorted(serving.iterdir()):
        versions = sorted((int(p.name) for p in model_dir.iterdir()
                           if p.name.isdigit() and (p / "saved_model.pb").exists()), reverse=True) \
            if model_dir.is_dir() else []
        if versions:
            return model_dir.name, model_dir
    return None


def _push_pipeline_model(out: Path, model: str) -> None:
    from msrec.data.generator import generate
    from msrec.pipeline.daily import run_day

    data = generate(out / "data", days=PIPELINE_DATE_DAYS, impressions_per_day=PIPELINE_IMPRESSIONS_PER_DAY,
                    progress=False)
    report = run_day(logs_dir=str(data.logs_dir), date=data.dates[-1], workdir=str(out), model=model,
                     window=PIPELINE_DATE_DAYS)
    if report.get("error") or not report.get("pushed_version"):
        raise RuntimeError(f"the pipeline pushed no model: {report.get('error') or 'not blessed'} "
                           f"(report under {out}/reports)")


def _push_toy_model(out: Path) -> None:
    from msrec.schemas import default_feature_config
    from msrec.schemas.feature_config import load_feature_config
    from msrec.serving.toy_model import export_toy_model

    config = load_feature_config(default_feature_config())
    export_toy_model(str(out / "serving" / "toy" / "1"), config)


def resolve_model(out: Path, model: str) -> tuple[str, Path, str]:
    """(model name, base path, how it was obtained)."""
    found = _find_pushed_model(out)
    if found is not None:
        return found[0], found[1], f"pushed model found under {found[1]}"
    if model == "toy":
        _push_toy_model(out)
        how = "toy contract model (msrec.serving.toy_model)"
    else:
        _push_pipeline_model(out, model)
        how = (f"{model} pushed by the daily pipeline on {PIPELINE_DATE_DAYS} generated days of "
               f"{PIPELINE_IMPRESSIONS_PER_DAY} impressions")
    name, base = _find_pushed_model(out) or (None, None)
    if name is None:
        raise RuntimeError(f"no model version under {out / 'serving'} after the push")
    return name, base, how


def make_inputs(signature: Any, n: int, seq_len: int, seed: int) -> dict[str, np.ndarray]:
    """Plausible raw inputs for ``n`` candidates of one user (shared sequences, like a real request)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in signature.structured_input_signature[1].items():
        if spec.dtype == tf.string:
            if spec.shape.rank == 2:
                row = np.array([f"{name}_{i}".encode() for i in rng.integers(0, 1000, seq_len)], dtype=object)
                out[name] = np.tile(row, (n, 1))
            else:
                out[name] = np.array([f"{name}_{i}".encode() for i in rng.integers(0, 1000, n)], dtype=object)
        elif spec.shape.rank == 2:  # seq_time_gap: seconds since each behaviour, up to 30 days
            out[name] = np.tile(np.sort(rng.uniform(0, 30 * 86400, seq_len)), (n, 1)).astype(spec.dtype.as_numpy_dtype)
        else:
            out[name] = rng.uniform(0, 10, n).astype(spec.dtype.as_numpy_dtype)
    return out


def process_cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) of a process so far: this one when ``pid`` is None."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclasses.dataclass
class _Sample:
    """One round of requests: each latency (s), the round's wall time and the CPU the worker used."""

    latencies: list[float]
    wall_s: float
    cpu_s: float


def _measure(call: Callable[[], None], requests: int, concurrency: int,
             cpu_seconds: Callable[[], float]) -> _Sample:
    """One round of ``requests`` calls from ``concurrency`` threads, after a warm-up."""
    for _ in range(WARMUP_REQUESTS):
        call()
    cpu_before = cpu_seconds()
    latencies: list[float] = []
    lock = threading.Lock()
    per_worker = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]

    def worker(count: int) -> None:
        mine = []
        for _ in range(count):
            started = time.perf_counter()
            call()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker, c) for c in per_worker]:
            f.result()
    return _Sample(latencies, time.perf_counter() - started, cpu_seconds() - cpu_before)


def _summary(samples: list[_Sample]) -> dict[str, float]:
    """Latency percentiles, QPS, and the CPU ms per request of the process doing the work, over rounds.

    CPU per request is the number to compare on a shared machine: wall-clock latency there also
    counts the time spent waiting for a core.
    """
    ms = np.asarray([x for s in samples for x in s.latencies]) * 1000
    wall, cpu = sum(s.wall_s for s in samples), sum(s.cpu_s for s in samples)
    return {"requests": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "qps": len(ms) / wall, "cpu_ms_per_request": cpu * 1000 / len(ms)}


def sequence_length(export_dir: Path, default: int = 50) -> int:
    """The sequence width the model's own warm-up requests use (the feature config's length)."""
    path = export_dir / WARMUP_FILE
    if not path.exists():
        return default
    for record in tf.data.TFRecordDataset(str(path)).take(1):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        widths = [t.tensor_shape.dim[1].size for t in log.predict_log.request.inputs.values()
                  if len(t.tensor_shape.dim) == 2]
        return max(widths, default=default)
    return default


class _ServerProcess:
    """``msrec serve`` in a child process on a free loopback port."""

    def __init__(self, name: str, base: Path, flags: list[str]) -> None:
        cmd = [sys.executable, "-m", "msrec.cli", "serve", "--port", "0", "--host", "127.0.0.1",
               "--model_name", name, "--model_base_path", str(base),
               "--file_system_poll_wait_seconds", "0"] + flags
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self.target = self._wait_for_port()

    def _wait_for_port(self, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._log.seek(0)
            match = _LISTENING.search(self._log.read().decode(errors="replace"))
            if match:
                return f"{match.group(1)}:{match.group(2)}"
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        self._log.seek(0)
        raise RuntimeError("msrec serve did not start:\n" + self._log.read().decode(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# server variants measured, by the flags `msrec serve` gets
SERVER_VARIANTS = {"grpc": []}


def _build_request(name: str, inputs: Mapping[str, np.ndarray]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in inputs.items():
        fill_tensor_proto(value, request.inputs[key])
    return request


def run_bench(name: str, base: Path, sizes: tuple[int, ...] = SIZES,
              concurrency: tuple[int, ...] = CONCURRENCY,
              requests: Mapping[int, int] | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(sequence width used, one row per size and concurrency)."""
    requests = requests or REQUESTS
    version = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
    seq_len = sequence_length(base / str(version))
    signature = tf.saved_model.load(str(base / str(version))).signatures["serving_default"]
    dtypes = {k: s.dtype for k, s in signature.structured_input_signature[1].items()}
    inputs = {size: make_inputs(signature, size, seq_len, seed=size) for size in sizes}
    rows = {(size, c): {"candidates": size, "concurrency": c,
                        "request_bytes": _build_request(name, inputs[size]).ByteSize()}
            for size in sizes for c in concurrency}
    servers: dict[str, _ServerProcess] = {}
    channels: list[grpc.Channel] = []
    try:
        calls: dict[str, Callable[[bytes], Any]] = {}
        for variant, flags in SERVER_VARIANTS.items():
            servers[variant] = _ServerProcess(name, base, flags)
            channels.append(grpc.insecure_channel(servers[variant].target,
                                                  [("grpc.max_send_message_length", 256 << 20),
                                                   ("grpc.max_receive_message_length", 256 << 20)]))
            # the stub's Predict method with the serializing left out: the request goes as built bytes
            calls[variant] = channels[-1].unary_unary(PREDICT_METHOD, request_serializer=None,
                                                      response_deserializer=predict_pb2.PredictResponse.FromString)
        for size in sizes:
            request = _build_request(name, inputs[size]).SerializeToString()

            def in_process(x: Mapping[str, np.ndarray] = inputs[size]) -> None:
                signature(**{k: tf.constant(v, dtypes[k]) for k, v in x.items()})["ctr"].numpy()

            for c in concurrency:
                total = requests.get(size, 100)
                rounds = [total // ROUNDS + (1 if i < total % ROUNDS else 0) for i in range(min(ROUNDS, total))]
                samples: dict[str, list[_Sample]] = {"in_process": [], **{v: [] for v in SERVER_VARIANTS}}
                for per_round in rounds:  # alternating, so a drift of the machine's speed hits every column
                    samples["in_process"].append(_measure(in_process, per_round, c, process_cpu_seconds))
                    for variant, call in calls.items():
                        pid = servers[variant].proc.pid
                        samples[variant].append(_measure(lambda: call(request, timeout=60), per_round, c,
                                                         lambda: process_cpu_seconds(pid)))
                row = rows[size, c]
                row.update({k: _summary(v) for k, v in samples.items()})
                for variant in SERVER_VARIANTS:
                    row[f"{variant}_p50_x"] = row[variant]["p50_ms"] / row["in_process"]["p50_ms"]
                    row[f"{variant}_qps_x"] = row[variant]["qps"] / row["in_process"]["qps"]
    finally:
        for channel in channels:
            channel.close()
        for server in servers.values():
            server.stop()
    return seq_len, list(rows.values())


_TITLES = {"in_process": "in-process", "grpc": "gRPC"}


def format_table(rows: list[dict[str, Any]]) -> str:
    groups = ["in_process", *SERVER_VARIANTS]
    head = f"{'cands':>5} {'conc':>4}"
    head += "".join(f" | {_TITLES[g] + ' p50':>17} {'p95':>7} {'p99':>7} {'QPS':>6} {'CPU':>6}" for g in groups)
    head += "".join(f" | {_TITLES[v] + ' / in-proc: p50':>29} {'QPS':>5}" for v in SERVER_VARIANTS)
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['candidates']:>5} {r['concurrency']:>4}"
        for g in groups:
            m = r[g]
            line += (f" | {m['p50_ms']:>17.2f} {m['p95_ms']:>7.2f} {m['p99_ms']:>7.2f} {m['qps']:>6.0f} "
                     f"{m['cpu_ms_per_request']:>6.2f}")
        line += "".join(f" | {r[f'{v}_p50_x']:>29.2f} {r[f'{v}_qps_x']:>5.2f}" for v in SERVER_VARIANTS)
        lines.append(line)
    lines.append("latencies in ms; QPS = requests per second over the whole run; CPU = CPU ms per request of "
                 "the process doing the work (the server's for gRPC, this one's in-process)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out or tempfile.mkdtemp(prefix="msrec-bench-serve-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = (args.models or "sarnet").split(",")[0].strip()
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else SIZES
    try:
        name, base, how = resolve_model(out, model)
    except Exception as e:  # noqa: BLE001 - report why no model could be had, without a traceback
        print(f"msrec bench serve: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"model: {name} from {base} ({how})", flush=True)
    seq_len, rows = run_bench(name, base, sizes=sizes)
    info = machine_info()
    print(f"each candidate carries every raw feature; behaviour sequences are {seq_len} long")
    print(format_table(rows))
    print(format_machine(info))
    result = {"model": {"name": name, "base_path": str(base), "source": how}, "machine": info,
              "sequence_length": seq_len, "rows": rows}
    path = out / RESULT_FILE
    path.write_text(json.dumps(result, indent=2))
    print(f"written to {path}")
    return 0
