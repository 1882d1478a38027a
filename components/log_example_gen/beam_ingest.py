"""The ingestion Beam pipeline: raw day folders -> tf.Examples (Split-train / -val / -eval) + quarantine.

1. ParseSideTable, GroupByKey, KeepFirstRow: side tables, one row per key, as AsDict side inputs.
2. ParseImpressionFiles: every line of the window and lookback days, validated; malformed window
   lines (and malformed side-table rows) go to <quarantine>/quarantine-*.jsonl, as does the unread
   rest of a damaged (truncated, corrupt) file.
3. GroupByKey(user_id), UserExamples: per user, repeated impressions dropped (the first in file
   order of each dedup key kept; the repeats counted, and quarantined unless kept), side-table
   columns joined, then the records sorted by ts and one pass with a bounded deque of past clicks
   (and of the lookback's impressions, for history counts) gives each impression its sequence.
   A dedup key that leaves out user_id (copies may then belong to different users) is
   deduplicated before the grouping, by a GroupByKey on the key (DropDuplicates).
4. For a window too short to split by day, the ts of the cut day's kept impressions give the time
   cuts of the splits (splits.py).
5. EncodeExamples (batches of 512, split by day or time: see splits.py), a shuffle keyed by each impression's
   digest (the same logs give the same order: a reproducible model), WriteGzipTFRecords:
   <examples>/Split-{train,val,eval}/data_tfrecord-*.gz.

Every stage also emits (key, n) tallies that end in counts.json; Beam metrics counters under the
``msrec.ingest`` namespace make progress visible while the job runs.
"""
from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput

from msrec.schemas.feature_config import SIDE_TABLE_KEYS, FeatureConfig, load_feature_config
from msrec.components.log_example_gen import counts as C
from msrec.components.log_example_gen.examples import ExampleEncoder
from msrec.components.log_example_gen.layout import (COUNTS_FILE, EXAMPLE_FILE_PREFIX, QUARANTINE_FILE_PREFIX, IngestError,
                                 IngestPlan, parse_date, plan_ingest)
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.components.log_example_gen.reading import Damage, parsed_lines
from msrec.components.log_example_gen.records import (DUPLICATE, DUPLICATE_KEY, Impression, ImpressionParser,
                                                    SideRowParser, join_side_rows, quarantine_entry)
from msrec.components.log_example_gen.sequences import Behaviour, build_sequences
from msrec.components.log_example_gen.splits import SPLITS, SplitPlan, split_of, split_plan, time_cuts
from msrec.components.tfrecord_sink import WriteGzipTFRecords

NAMESPACE = "msrec.ingest"
QUARANTINE = "quarantine"
COUNTS = "counts"

ENCODE_BATCH = 512  # examples per call of the C++ encoder; amortises its per-call cost
SHUFFLE_BUCKETS = 1 << 14  # keys of the shuffle before the examples are written

_log = logging.getLogger(__name__)


class ParseImpressionFiles(beam.DoFn):
    """Reads whole impression files (so each line keeps its number) and validates every line.

    Main output: accepted window impressions, and accepted lookback *clicks* (the only lookback
    records sequences need), or every lookback impression when the config counts the user's history
    (``source: history``). Quarantine entries are emitted for window days only: lookback lines
    were quarantined by their own day's run, and are merely counted here.
    """

    def __init__(self, config: FeatureConfig, limits: IngestLimits):
        self._config = config
        self._limits = limits
        self._lookback_all = bool(config.history_counts)

    def setup(self) -> None:
        self._parser = ImpressionParser(self._config, self._limits)
        self._read = {w: Metrics.counter(NAMESPACE, ("" if w else C.LOOKBACK) + C.READ) for w in (True, False)}
        self._accepted = Metrics.counter(NAMESPACE, C.VALID)
        self._quarantined = Metrics.counter(NAMESPACE, "quarantined")
        self._reasons: dict[str, Any] = {}

    def process(self, element: tuple[str, str, bool]) -> Iterator[Any]:
        path, day_iso, in_window = element
        day = dt.date.fromisoformat(day_iso)
        prefix = "" if in_window else C.LOOKBACK
        tally: collections.Counter[str] = collections.Counter()
        parse = functools.partial(self._parser.parse, day=day, in_window=in_window)
        for _, result in parsed_lines(path, self._limits, parse):
            if isinstance(result, Damage):
                if in_window:
                    for key, n in C.damage_tallies(result, path):
                        yield TaggedOutput(COUNTS, (key, n))
                continue
            tally[C.READ] += 1
            self._read[in_window].inc()
            if isinstance(result, Impression):
                tally[C.VALID] += 1
                if in_window:
                    self._accepted.inc()
                    yield result
                elif result.click or self._lookback_all:
                    yield result
            else:
                tally[C.REASON + result["reason"]] += 1
                if in_window:
                    self._quarantined.inc()
                    self._reason_counter(result["reason"]).inc()
                    yield TaggedOutput(QUARANTINE, result)
        for key, n in tally.items():
            yield TaggedOutput(COUNTS, (prefix + key, n))

    def _reason_counter(self, reason: str) -> Any:
        if reason not in self._reasons:
            self._reasons[reason] = Metrics.counter(NAMESPACE, f"quarantined.{reason}")
        return self._reasons[reason]


class ParseSideTable(beam.DoFn):
    """Side-table file -> (key, (file, line_no, raw, row)); malformed rows go to quarantine."""

    def __init__(self, config: FeatureConfig, table: str, limits: IngestLimits):
        self._config = config
        self._table = table
        self._limits = limits

    def setup(self) -> None:
        self._parser = SideRowParser(self._config, self._table, SIDE_TABLE_KEYS[self._table], self._limits)

    def process(self, path: str) -> Iterator[Any]:
        tally: collections.Counter[str] = collections.Counter()
        for line, result in parsed_lines(path, self._limits, self._parser.parse):
            if isinstance(result, Damage):
                for key, n in C.damage_tallies(result, path):
                    yield TaggedOutput(COUNTS, (key, n))
                continue
            tally[C.READ] += 1
            if isinstance(result, dict):
                tally[C.REASON + result["reason"]] += 1
                yield TaggedOutput(QUARANTINE, result)
            else:
                key, row = result
                yield key, (path, line.line_no, line.raw, row)
        for key, n in tally.items():
            yield TaggedOutput(COUNTS, (C.side_key(self._table, key), n))


class KeepFirstRow(beam.DoFn):
    """One row per key: the first in file order; later duplicates are quarantined, not dropped."""

    def __init__(self, table: str):
        self._table = table

    def process(self, element: tuple[str, Iterable[tuple[str, int, bytes, dict[str, Any]]]]) -> Iterator[Any]:
        key, rows = element
        first, *duplicates = sorted(rows, key=lambda r: (r[0], r[1]))
        yield key, first[3]
        for path, line_no, raw, _ in duplicates:
            detail = f"{SIDE_TABLE_KEYS[self._table]} {key!r} already defined at {first[0]}:{first[1]}"
            yield TaggedOutput(QUARANTINE, quarantine_entry(DUPLICATE_KEY, detail, path, line_no, raw))
            yield TaggedOutput(COUNTS, (C.side_key(self._table, C.REASON + DUPLICATE_KEY), 1))


def drop_duplicates(records: Iterable[Impression], limits: IngestLimits) -> Iterator[Any]:
    """Records sharing a dedup key -> the first in file order; the repeats are counted, and kept or
    quarantined with their reason (window lines only: lookback lines were reported by their own day)."""
    first, *repeats = sorted(records, key=lambda r: (r.file, r.line_no))
    yield first
    for r in repeats:
        prefix = "" if r.in_window else C.LOOKBACK
        yield TaggedOutput(COUNTS, (prefix + C.DUPLICATES, 1))
        if limits.keep_duplicates:
            yield r
            continue
        yield TaggedOutput(COUNTS, (prefix + C.DUPLICATES_DROPPED, 1))
        if r.in_window:
            detail = f"same {limits.describe_key()} as {first.file}:{first.line_no}"
            yield TaggedOutput(QUARANTINE, quarantine_entry(DUPLICATE, detail, r.file, r.line_no, b""))


class DropDuplicates(beam.DoFn):
    """(dedup key, records) -> :func:`drop_duplicates`."""

    def __init__(self, limits: IngestLimits):
        self._limits = limits

    def process(self, element: tuple[str, Iterable[Impression]]) -> Iterator[Any]:
        yield from drop_duplicates(element[1], self._limits)


class UserExamples(beam.DoFn):
    """One user's records -> (impression, behaviours) of each in-window impression: duplicates dropped
    (when ``dedup``: :func:`drop_duplicates` per dedup key, the user's group holding every copy),
    side-table columns added (a missed join leaves them absent), then the behaviour sequences."""

    def __init__(self, config: FeatureConfig, limits: IngestLimits, tables: Sequence[str], dedup: bool):
        self._columns = config.sequence.columns
        self._length = config.sequence.length
        self._counts = config.history_counts
        self._lookback_days = config.sequence.lookback_days
        self._limits = limits
        self._tables = tuple(tables)
        self._dedup = dedup

    def setup(self) -> None:
        self._missed = {t: Metrics.counter(NAMESPACE, f"join_missed.{t}") for t in self._tables}

    def process(self, element: tuple[str, Iterable[Impression]], **side: dict[str, dict[str, Any]]
                ) -> Iterator[Any]:
        records: Iterable[Impression] = element[1]
        if self._dedup:
            records, reports = self._first_copies(records)
            yield from reports
        joined = []
        tables = {t: side[t] for t in self._tables}
        for record in records:
            # Beam elements are immutable: the join builds a new feature dict
            features, missed = join_side_rows(record.features, tables)
            for table in missed if record.in_window else ():
                self._missed[table].inc()
                yield TaggedOutput(COUNTS, (C.JOIN_MISSED + table, 1))
            joined.append(record._replace(features=features))
        yield from build_sequences(joined, self._columns, self._length, self._counts, self._lookback_days)

    def _first_copies(self, records: Iterable[Impression]) -> tuple[list[Impression], list[Any]]:
        """The records kept, and the counts and quarantine entries of the repeats."""
        by_key: dict[str, list[Impression]] = collections.defaultdict(list)
        for r in records:
            by_key[r.dedup_key].append(r)
        kept: list[Impression] = []
        reports: list[Any] = []
        for copies in by_key.values():
            for out in drop_duplicates(copies, self._limits) if len(copies) > 1 else copies:
                (reports if isinstance(out, TaggedOutput) else kept).append(out)
        return kept, reports


class EncodeExamples(beam.DoFn):
    """Serialises batches of examples into the output of their split (``plan``: by day, and by the
    ``cuts`` ts side input within the plan's cut day)."""

    def __init__(self, config: FeatureConfig, plan: SplitPlan):
        self._config = config
        self._plan = plan

    def setup(self) -> None:
        self._encoder = ExampleEncoder(self._config)
        self._written = {s: Metrics.counter(NAMESPACE, f"examples.{s}") for s in SPLITS}

    def process(self, batch: list[tuple[Impression, tuple[Behaviour, ...]]],
                cuts: tuple[int, int | None] | None = None) -> Iterator[Any]:
        clicks: collections.Counter[str] = collections.Counter()
        for (record, _), serialized in zip(batch, self._encoder.encode(batch)):
            split = split_of(record, self._plan, cuts)
            self._written[split].inc()
            clicks[split] += record.click
            yield TaggedOutput(split, (shuffle_bucket(record.dedup_key), serialized))
        for split, n in clicks.items():
            yield TaggedOutput(COUNTS, (C.CLICKS + split, n))


def shuffle_bucket(digest: str) -> int:
    """The write order's key of an impression: a bucket from its digest, not a random number, so the
    same logs give the same example order on every run (a reproducible model) while each bucket holds
    examples from the whole day."""
    return int(digest[:8], 16) % SHUFFLE_BUCKETS


def _count(pcoll: beam.PCollection, key: str, label: str) -> beam.PCollection:
    return pcoll | f"Count{label}" >> beam.combiners.Count.Globally() | f"Key{label}" >> beam.Map(lambda n: (key, n))


def _cut_day_ts(records: beam.PCollection, cut_day: str, first_copies: bool) -> beam.PCollection:
    """The ts of each impression of the cut day that ingestion keeps; with ``first_copies``
    (``records`` not yet deduplicated), of the first in file order of each dedup key only: a small
    shuffle of keys and line numbers, before the users' records are grouped."""
    def cut_ts(r: Impression) -> list[int]:
        return [r.ts] if r.in_window and r.day == cut_day else []

    if not first_copies:
        return records | "CutDayTs" >> beam.FlatMap(cut_ts)
    return (records
            | "FirstCopies" >> beam.Map(lambda r: (r.dedup_key, (r.file, r.line_no, cut_ts(r))))
            | "FirstCopy" >> beam.CombinePerKey(min)
            | "CutDayTs" >> beam.FlatMap(lambda kv: kv[1][2]))


def _write_counts(flat: dict[str, int], plan: IngestPlan, path: str) -> None:
    with FileSystems.create(path) as fh:
        fh.write(json.dumps(C.assemble(flat, plan), indent=2, sort_keys=True).encode())


def build_ingest_pipeline(p: beam.Pipeline, plan: IngestPlan, config: FeatureConfig,
                          examples_dir: str, quarantine_dir: str, eval_days: int = 1, val_days: int = 1,
                          limits: IngestLimits = IngestLimits()) -> None:
    """Adds the ingestion of ``plan`` to ``p``: examples under ``examples_dir`` split as splits.py
    says for ``eval_days`` and ``val_days``, quarantine-*.jsonl and counts.json under ``quarantine_dir``;
    ``limits``: line and field sizes, duplicates."""
    tallies: list[beam.PCollection] = []
    quarantines: list[beam.PCollection] = []

    files = [(path, d.day.isoformat(), d.in_window) for d in plan.lookback + plan.window for path in d.files]
    parsed = (p
              | "ImpressionFiles" >> beam.Create(files)
              | "SpreadFiles" >> beam.Reshuffle()
              | "ParseImpressions" >> beam.ParDo(ParseImpressionFiles(config, limits)).with_outputs(
                  QUARANTINE, COUNTS, main="records"))
    tallies.append(parsed[COUNTS])
    quarantines.append(parsed[QUARANTINE])
    # Copies of an impression share its user when the dedup key covers user_id (all fields do): the
    # per-user grouping that builds the sequences then finds them too, and a shuffle of every record
    # by its dedup key is saved.
    dedup_by_user = limits.key_covers(SIDE_TABLE_KEYS["users"])
    records = parsed["records"]
    if not dedup_by_user:
        deduped = (records
                   | "KeyByDedupKey" >> beam.Map(lambda r: (r.dedup_key, r))
                   | "GroupDuplicates" >> beam.GroupByKey()
                   | "DropDuplicates" >> beam.ParDo(DropDuplicates(limits)).with_outputs(
                       QUARANTINE, COUNTS, main="records"))
        records = deduped["records"]
        tallies.append(deduped[COUNTS])
        quarantines.append(deduped[QUARANTINE])

    side_inputs = {}
    for table, path in plan.side_tables.items():
        rows = (p
                | f"{table}File" >> beam.Create([path])
                | f"Parse_{table}" >> beam.ParDo(ParseSideTable(config, table, limits)).with_outputs(
                    QUARANTINE, COUNTS, main="rows"))
        unique = (rows["rows"]
                  | f"GroupKeys_{table}" >> beam.GroupByKey()
                  | f"KeepFirst_{table}" >> beam.ParDo(KeepFirstRow(table)).with_outputs(
                      QUARANTINE, COUNTS, main="unique"))
        tallies += [rows[COUNTS], unique[COUNTS],
                    _count(unique["unique"], C.side_key(table, C.ROWS), f"Rows_{table}")]
        quarantines += [rows[QUARANTINE], unique[QUARANTINE]]
        side_inputs[table] = beam.pvalue.AsDict(unique["unique"])

    users = (records
             | "KeyByUser" >> beam.Map(lambda r: (r.user_id, r))
             | "GroupByUser" >> beam.GroupByKey()
             | "UserExamples" >> beam.ParDo(UserExamples(config, limits, list(plan.side_tables), dedup_by_user),
                                            **side_inputs).with_outputs(QUARANTINE, COUNTS, main="examples"))
    tallies.append(users[COUNTS])
    quarantines.append(users[QUARANTINE])
    with_sequences = users["examples"] | "Batch" >> beam.BatchElements(
        min_batch_size=ENCODE_BATCH, max_batch_size=ENCODE_BATCH)

    splits = split_plan([d.day.isoformat() for d in plan.window], eval_days, val_days)
    if splits.cut_day is None:
        encoded = with_sequences | "Encode" >> beam.ParDo(
            EncodeExamples(config, splits)).with_outputs(COUNTS, *SPLITS)
    else:
        cuts = (_cut_day_ts(records, splits.cut_day, dedup_by_user and not limits.keep_duplicates)
                | "AllTs" >> beam.combiners.ToList()
                | "TimeCuts" >> beam.Map(time_cuts, splits.cut_eval))
        encoded = with_sequences | "Encode" >> beam.ParDo(
            EncodeExamples(config, splits), beam.pvalue.AsSingleton(cuts)).with_outputs(COUNTS, *SPLITS)
    tallies.append(encoded[COUNTS])

    for split in SPLITS:
        out = encoded[split]
        tallies.append(_count(out, C.SPLIT + split, split.capitalize()))
        _ = (out
             | f"Shuffle{split.capitalize()}" >> beam.GroupByKey()
             | f"Unkey{split.capitalize()}" >> beam.FlatMap(lambda bucket: bucket[1])
             | f"Write{split.capitalize()}" >> WriteGzipTFRecords(
                 FileSystems.join(examples_dir, f"Split-{split}", EXAMPLE_FILE_PREFIX)))

    quarantine = quarantines | "AllQuarantine" >> beam.Flatten()
    tallies.append(_count(quarantine, C.QUARANTINE_RECORDS, "Quarantine"))
    _ = (quarantine
         | "QuarantineJson" >> beam.Map(lambda q: json.dumps(q, sort_keys=True))
         | "WriteQuarantine" >> beam.io.WriteToText(
             FileSystems.join(quarantine_dir, QUARANTINE_FILE_PREFIX), file_name_suffix=".jsonl"))

    counts_path = FileSystems.join(quarantine_dir, COUNTS_FILE)
    _ = (tallies
         | "AllTallies" >> beam.Flatten()
         | "SumTallies" >> beam.CombinePerKey(sum)
         | "TallyDict" >> beam.combiners.ToDict()
         | "WriteCounts" >> beam.Map(_write_counts, plan, counts_path))


def _check_fresh(examples_dir: str, quarantine_dir: str) -> None:
    # Stale shards of an earlier run would be read as part of this one: refuse rather than mix.
    patterns = [FileSystems.join(examples_dir, "Split-*", "*"),
                FileSystems.join(quarantine_dir, QUARANTINE_FILE_PREFIX + "-*"),
                FileSystems.join(quarantine_dir, COUNTS_FILE)]
    found = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if found:
        raise IngestError(f"output of an earlier run is in the way ({found[0]} ...); "
                          "ingestion writes into fresh folders")


def run_ingest(logs_dir: str, date: str, window_days: int, feature_config_path: str,
               examples_dir: str, quarantine_dir: str, beam_pipeline_args: Sequence[str] = (),
               *, eval_days: int = 1, val_days: int = 1, limits: IngestLimits = IngestLimits(),
               make_pipeline: Callable[[], beam.Pipeline] | None = None) -> dict[str, Any]:
    """Ingest the window ending on ``date`` and return the counts (also written to counts.json).

    ``eval_days`` and ``val_days``: the newest days that are the eval and val splits (splits.py).

    ``make_pipeline`` lets a TFX executor supply its own configured pipeline; otherwise one is
    built from ``beam_pipeline_args`` (any runner: DirectRunner in_memory / multi_processing ...).
    ``limits``: line and field sizes, and how duplicates are found and handled.
    Raises IngestError when the inputs are unusable or the counts do not add up.
    """
    config = load_feature_config(feature_config_path)
    plan = plan_ingest(logs_dir, parse_date(date), window_days, config)
    _check_fresh(examples_dir, quarantine_dir)
    _log.info("ingesting window %s (lookback %d days) from %s",
              [d.day.isoformat() for d in plan.window], len(plan.lookback), logs_dir)
    pipeline = make_pipeline() if make_pipeline else beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args)))
    with pipeline as p:
        build_ingest_pipeline(p, plan, config, examples_dir, quarantine_dir, eval_days, val_days, limits)
    counts = read_counts(quarantine_dir)
    C.check(counts)
    _log.info("ingested %s: read %d, accepted %d, quarantined %d %s, splits %s", date, counts["read"],
              counts["accepted"], counts["quarantined"], counts["reasons"], counts["splits"])
    return counts


def read_counts(quarantine_dir: str) -> dict[str, Any]:
    with FileSystems.open(FileSystems.join(quarantine_dir, COUNTS_FILE)) as fh:
        return json.loads(fh.read())
