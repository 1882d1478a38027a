"""The append-only scenario registry of a workdir: a scenario keeps its index forever."""
from __future__ import annotations

import json
import os

SCENARIO_INDEX = "scenario_index.json"


def scenario_vocabulary(logs_dir: str, workdir: str) -> list[str]:
    """The append-only scenario registry: a scenario keeps its index forever, new ones go last.

    Scenarios come from the scenarios side table; one absent from it gets the OOV slot."""
    path = os.path.join(workdir, SCENARIO_INDEX)
    known: list[str] = []
    if os.path.exists(path):
        with open(path) as fh:
            known = json.load(fh)
    table = os.path.join(logs_dir, "scenarios.jsonl")
    seen = set(known)
    if os.path.exists(table):
        with open(table) as fh:
            fresh = sorted({json.loads(line)["scenario_id"] for line in fh if line.strip()} - seen)
        known += fresh
    if not known:
        raise FileNotFoundError(f"no scenarios: {table} is missing or empty and {path} does not exist yet")
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(known, fh)
    return known
