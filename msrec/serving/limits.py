"""What one request may cost the server, and the defaults ``msrec serve`` starts with.

Import-light on purpose (no TensorFlow): ``msrec serve --help`` reads the defaults here.

The limits bound a request by what it decodes to, not by what it weighs on the wire: a 1 KB
request can ask for a single value broadcast to two million elements. Every input gets an element
budget derived from its signature shape (``max_candidates`` rows, each unknown inner dimension
counted as ``max_sequence_length``), and the whole request, broadcasts included, must decode to at
most ``max_message_bytes``. Both are checked on the protos, before any array is allocated.

Defaults measured with the toy model on the 2-core development machine (``msrec serve`` one
request at a time): 1,000 candidates with 5 behaviour sequences of length 100 answer in about
0.3 s with under 100 MB of extra memory (length 50: 0.1 s, 45 MB); 10,000 candidates of length 50
took 3.8 s and 470 MB, and a real model costs several times the toy's.
"""
from __future__ import annotations

import dataclasses
import sys

from msrec.serving.errors import ConfigError

DEFAULT_MAX_CANDIDATES = 1_000
DEFAULT_MAX_SEQUENCE_LENGTH = 100  # twice the default feature config's sequence.length (50)
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 1:
                raise ConfigError(f"--{field.name} must be positive, got {getattr(self, field.name)}")

    @classmethod
    def unlimited(cls) -> RequestLimits:
        """For a model's own warm-up requests, which are trusted."""
        return cls(sys.maxsize, sys.maxsize, sys.maxsize)

    def max_elements(self, shape: tuple[int | None, ...] | None) -> int:
        """Elements one input of signature shape ``shape`` may hold (None: unknown rank or dim).

        Dimension 0 is the candidates; every other unknown dimension counts as a sequence.
        An input of unknown rank is budgeted as a [candidates, sequence] input.
        """
        if shape is None:
            return self.max_candidates * self.max_sequence_length
        elements = 1
        for axis, dim in enumerate(shape):
            if dim is not None:
                elements *= dim
            else:
                elements *= self.max_candidates if axis == 0 else self.max_sequence_length
        return elements
