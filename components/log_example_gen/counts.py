"""The run's bookkeeping: flat (key, n) tallies from the pipeline become counts.json, and the
identities that prove nothing was silently dropped are checked."""
from __future__ import annotations

from typing import Any, Mapping

from msrec.schemas.feature_config import SIDE_TABLE_KEYS
from msrec.components.log_example_gen.layout import IngestError, IngestPlan
from msrec.components.log_example_gen.records import IMPRESSION_REASONS, SIDE_REASONS
from msrec.components.log_example_gen.splits import SPLITS

# Flat keys the pipeline emits; "lookback_" prefixes the same tallies for lookback days.
READ = "read"
ACCEPTED = "accepted"
REASON = "reason/"
LOOKBACK = "lookback_"
JOIN_MISSED = "join_missed/"
SPLIT = "split/"
SIDE = "side/"
ROWS = "rows"
QUARANTINE_RECORDS = "quarantine_records"


def side_key(table: str, key: str) -> str:
    return f"{SIDE}{table}/{key}"


def assemble(flat: Mapping[str, int], plan: IngestPlan) -> dict[str, Any]:
    def n(key: str) -> int:
        return int(flat.get(key, 0))

    reasons = {r: n(REASON + r) for r in IMPRESSION_REASONS}
    side = {}
    for table in plan.side_tables:
        side_reasons = {r: n(side_key(table, REASON + r)) for r in SIDE_REASONS}
        side[table] = {"file": plan.side_tables[table], "read": n(side_key(table, READ)),
                       "rows": n(side_key(table, ROWS)), "quarantined": sum(side_reasons.values()),
                       "reasons": side_reasons}
    return {
        "date": plan.date.isoformat(),
        "span": plan.span,
        "window": [d.day.isoformat() for d in plan.window],
        "lookback": [d.day.isoformat() for d in plan.lookback],
        "read": n(READ),
        "accepted": n(ACCEPTED),
        "quarantined": sum(reasons.values()),
        "reasons": reasons,
        "splits": {s: n(SPLIT + s) for s in SPLITS},
        "lookback_read": n(LOOKBACK + READ),
        "lookback_accepted": n(LOOKBACK + ACCEPTED),
        "lookback_quarantined": sum(n(LOOKBACK + REASON + r) for r in IMPRESSION_REASONS),
        "join_missed": {t: n(JOIN_MISSED + t) for t in SIDE_TABLE_KEYS if t in plan.side_tables},
        "side_tables": side,
        "quarantine_records": n(QUARANTINE_RECORDS),
    }


def check(counts: Mapping[str, Any]) -> None:
    """Raise IngestError when the counts do not add up: a record went missing somewhere."""
    problems = []
    if counts["read"] != counts["accepted"] + counts["quarantined"]:
        problems.append(f"read {counts['read']} != accepted {counts['accepted']} "
                        f"+ quarantined {counts['quarantined']}")
    if counts["accepted"] != sum(counts["splits"].values()):
        problems.append(f"accepted {counts['accepted']} != examples written {counts['splits']}")
    if counts["lookback_read"] != counts["lookback_accepted"] + counts["lookback_quarantined"]:
        problems.append(f"lookback_read {counts['lookback_read']} != lookback_accepted "
                        f"{counts['lookback_accepted']} + lookback_quarantined {counts['lookback_quarantined']}")
    side_quarantined = 0
    for table, c in counts["side_tables"].items():
        side_quarantined += c["quarantined"]
        if c["read"] != c["rows"] + c["quarantined"]:
            problems.append(f"{table}: read {c['read']} != rows {c['rows']} + quarantined {c['quarantined']}")
    if counts["quarantine_records"] != counts["quarantined"] + side_quarantined:
        problems.append(f"quarantine records written {counts['quarantine_records']} != quarantined "
                        f"{counts['quarantined']} + side-table quarantined {side_quarantined}")
    if problems:
        raise IngestError("ingestion counts do not add up: " + "; ".join(problems))
