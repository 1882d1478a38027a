"""The run's bookkeeping: flat (key, n) tallies from the pipeline become counts.json, and the
identities that prove nothing was silently dropped are checked."""
from __future__ import annotations

from typing import Any, Mapping

from msrec.schemas.feature_config import SIDE_TABLE_KEYS
from msrec.components.log_example_gen.layout import IngestError, IngestPlan
from msrec.components.log_example_gen.reading import Damage
from msrec.components.log_example_gen.records import FILE_REASONS, IMPRESSION_REASONS, SIDE_REASONS
from msrec.components.log_example_gen.splits import SPLITS

# Flat keys the pipeline emits; "lookback_" prefixes the same tallies for lookback days.
READ = "read"
VALID = "valid"  # lines that parsed; those not dropped as duplicates are the accepted ones
DUPLICATES = "duplicates"
DUPLICATES_DROPPED = "duplicates_dropped"
REASON = "reason/"
LOOKBACK = "lookback_"
JOIN_MISSED = "join_missed/"
SPLIT = "split/"
CLICKS = "clicks/"  # clicks among a split's examples
DAMAGED = "damaged/"  # DAMAGED + field + "|" + file, for each damaged (truncated, corrupt) file
SIDE = "side/"
ROWS = "rows"
QUARANTINE_RECORDS = "quarantine_records"


def side_key(table: str, key: str) -> str:
    return f"{SIDE}{table}/{key}"


def damage_tallies(damage: Damage, file: str) -> list[tuple[str, int]]:
    """The damaged-file tallies of ``file``; they end in counts.json's ``damaged_files``."""
    values = {"lines_read": damage.lines_read, "bytes_read": damage.bytes_read, "bytes_unread": damage.bytes_unread,
              REASON + damage.reason: 1}
    return [(f"{DAMAGED}{field}|{file}", n) for field, n in values.items()]


def _damaged_files(flat: Mapping[str, int]) -> list[dict[str, Any]]:
    by_file: dict[str, dict[str, Any]] = {}
    for key, n in flat.items():
        if key.startswith(DAMAGED):
            field, file = key[len(DAMAGED):].split("|", 1)
            entry = by_file.setdefault(file, {"file": file})
            if field.startswith(REASON):
                entry["reason"] = field[len(REASON):]
            else:
                entry[field] = int(n)
    return [by_file[f] for f in sorted(by_file)]


def assemble(flat: Mapping[str, int], plan: IngestPlan) -> dict[str, Any]:
    def n(key: str) -> int:
        return int(flat.get(key, 0))

    # Only the reasons that occurred: the known ones are listed in records.py.
    reasons = {r: n(REASON + r) for r in IMPRESSION_REASONS if n(REASON + r)}
    read, quarantined = n(READ), sum(reasons.values())
    damaged = _damaged_files(flat)
    side = {}
    for table in plan.side_tables:
        side_reasons = {r: n(side_key(table, REASON + r)) for r in SIDE_REASONS if n(side_key(table, REASON + r))}
        side[table] = {"file": plan.side_tables[table], "read": n(side_key(table, READ)),
                       "rows": n(side_key(table, ROWS)), "quarantined": sum(side_reasons.values()),
                       "reasons": side_reasons}
    return {
        "date": plan.date.isoformat(),
        "span": plan.span,
        "window": [d.day.isoformat() for d in plan.window],
        "lookback": [d.day.isoformat() for d in plan.lookback],
        "read": read,
        "valid": n(VALID),
        "duplicates": n(DUPLICATES),
        "duplicates_dropped": n(DUPLICATES_DROPPED),
        "accepted": n(VALID) - n(DUPLICATES_DROPPED),
        "quarantined": quarantined,
        "quarantine_rate": quarantined / read if read else 0.0,
        "reasons": reasons,
        "splits": {s: n(SPLIT + s) for s in SPLITS},
        "clicks": {s: n(CLICKS + s) for s in SPLITS},
        "damaged_files": damaged,
        "bytes_unread": sum(d["bytes_unread"] for d in damaged),
        "lookback_read": n(LOOKBACK + READ),
        "lookback_valid": n(LOOKBACK + VALID),
        "lookback_duplicates_dropped": n(LOOKBACK + DUPLICATES_DROPPED),
        "lookback_accepted": n(LOOKBACK + VALID) - n(LOOKBACK + DUPLICATES_DROPPED),
        "lookback_quarantined": sum(n(LOOKBACK + REASON + r) for r in IMPRESSION_REASONS),
        "join_missed": {t: n(JOIN_MISSED + t) for t in SIDE_TABLE_KEYS if t in plan.side_tables},
        "side_tables": side,
        "quarantine_records": n(QUARANTINE_RECORDS),
    }


def check(counts: Mapping[str, Any]) -> None:
    """Raise IngestError when the counts do not add up: a record went missing somewhere."""
    problems = []
    if counts["read"] != counts["accepted"] + counts["quarantined"] + counts["duplicates_dropped"]:
        problems.append(f"read {counts['read']} != accepted {counts['accepted']} + quarantined "
                        f"{counts['quarantined']} + duplicates dropped {counts['duplicates_dropped']}")
    if counts["accepted"] != sum(counts["splits"].values()):
        problems.append(f"accepted {counts['accepted']} != examples written {counts['splits']}")
    if counts["lookback_read"] != counts["lookback_valid"] + counts["lookback_quarantined"]:
        problems.append(f"lookback_read {counts['lookback_read']} != lookback_valid "
                        f"{counts['lookback_valid']} + lookback_quarantined {counts['lookback_quarantined']}")
    side_quarantined = 0
    for table, c in counts["side_tables"].items():
        side_quarantined += c["quarantined"]
        if c["read"] != c["rows"] + c["quarantined"]:
            problems.append(f"{table}: read {c['read']} != rows {c['rows']} + quarantined {c['quarantined']}")
    expected_records = counts["quarantined"] + side_quarantined + counts["duplicates_dropped"]
    if counts["quarantine_records"] != expected_records:
        problems.append(f"quarantine records written {counts['quarantine_records']} != quarantined "
                        f"{counts['quarantined']} + side-table quarantined {side_quarantined} "
                        f"+ duplicates dropped {counts['duplicates_dropped']}")
    # each damaged file is one quarantine record, of the window or of a side table
    reasons = [counts["reasons"]] + [c["reasons"] for c in counts["side_tables"].values()]
    damaged_records = sum(r.get(reason, 0) for r in reasons for reason in FILE_REASONS)
    if len(counts["damaged_files"]) != damaged_records:
        problems.append(f"{len(counts['damaged_files'])} damaged files != {damaged_records} quarantined as damaged")
    if problems:
        raise IngestError("ingestion counts do not add up: " + "; ".join(problems))
