"""``msrec bench serve`` end to end on the toy contract model: the server runs in its own process on
127.0.0.1, requests go as pre-serialized bytes through the PredictionService method, and each row
has both sides' latencies and their ratio. Numbers are not asserted (speed is a benchmark's job)."""
from pathlib import Path

from msrec.bench.serve import format_table, resolve_model, run_bench


def test_one_size_at_concurrency_one_gets_grpc_and_in_process_rows(tmp_path: Path) -> None:
    name, base, how = resolve_model(tmp_path, "toy")
    assert name == "toy" and "toy" in how
    seq_len, rows = run_bench(name, base, sizes=(3,), concurrency=(1,), requests={3: 5})
    (row,) = rows
    assert row["candidates"] == 3 and row["request_bytes"] > 0 and seq_len > 0
    for side in ("in_process", "grpc"):
        assert row[side]["requests"] == 5 and row[side]["p50_ms"] > 0
    assert row["grpc_p50_x"] == row["grpc"]["p50_ms"] / row["in_process"]["p50_ms"]
    assert "gRPC / in-proc" in format_table(rows)
