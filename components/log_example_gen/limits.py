"""What ingestion accepts: size limits on lines and fields, and how duplicate impressions are found
and handled. Carried to the TFX component as one JSON execution property."""
from __future__ import annotations

import dataclasses
import json

@dataclasses.dataclass(frozen=True)
class IngestLimits:
    # A real impression line is a few hundred bytes and an id or category a few dozen: far bigger
    # means a broken producer, and parsing it would cost memory for nothing.
    max_line_bytes: int = 64 * 1024
    max_field_bytes: int = 4 * 1024
    dedup_key: tuple[str, ...] = ()  # fields that identify an impression; () = all its fields
    keep_duplicates: bool = False  # duplicates are always counted; kept only when asked

    def __post_init__(self) -> None:
        if self.max_line_bytes < 1 or self.max_field_bytes < 1:
            raise ValueError(f"size limits must be positive: max_line_bytes {self.max_line_bytes}, "
                              f"max_field_bytes {self.max_field_bytes}")
        object.__setattr__(self, "dedup_key", tuple(self.dedup_key))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IngestLimits":
        return cls(**json.loads(text)) if text else cls()

    def key_covers(self, field: str) -> bool:
        """Whether two impressions with the same key have the same ``field`` (all fields do)."""
        return not self.dedup_key or field in self.dedup_key

    def describe_key(self) -> str:
        return ",".join(self.dedup_key) if self.dedup_key else "all fields"


def dedup_fields(text: str) -> tuple[str, ...]:
    """``--dedup-key`` as fields: comma-separated names, or empty for all fields."""
    return tuple(f.strip() for f in text.split(",") if f.strip())

