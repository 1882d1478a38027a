"""The append-only scenario registry of a workdir: a scenario keeps its index forever."""
from __future__ import annotations

import json
import os

from msrec.components.log_example_gen.layout import side_table_path
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.components.log_example_gen.reading import parsed_lines
from msrec.components.log_example_gen.records import SideRowParser
from msrec.schemas.feature_config import SIDE_TABLE_KEYS, FeatureConfig

SCENARIO_INDEX = "scenario_index.json"
TABLE = "scenarios"


def scenario_vocabulary(logs_dir: str, workdir: str, config: FeatureConfig,
                        limits: IngestLimits = IngestLimits()) -> list[str]:
    """The append-only scenario registry: a scenario keeps its index forever, new ones go last.

    Scenarios come from the scenarios side table (plain or gzip), read as ingestion reads it: rows it
    quarantines (with their reason, in the run's quarantine) add no scenario here. One absent from
    the table gets the OOV slot."""
    path = os.path.join(workdir, SCENARIO_INDEX)
    known: list[str] = []
    if os.path.exists(path):
        with open(path) as fh:
            known = json.load(fh)
    table = side_table_path(logs_dir, TABLE)
    if table is not None:
        parser = SideRowParser(config, TABLE, SIDE_TABLE_KEYS[TABLE], limits)
        keys = {result[0] for line, result in parsed_lines(table, limits, parser.parse)
                if line is not None and not isinstance(result, dict)}
        known += sorted(keys - set(known))
    if not known:
        raise FileNotFoundError(f"no scenarios: {os.path.join(logs_dir, TABLE)}.jsonl[.gz] is missing or has no "
                                f"valid row, and {path} does not exist yet")
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(known, fh)
    return known
