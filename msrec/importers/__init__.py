"""Converters from public datasets a user downloaded into msrec's raw-log contract
(``LOGS/YYYY-MM-DD/impressions-*.jsonl``, side tables, a feature config). Nothing is downloaded."""
