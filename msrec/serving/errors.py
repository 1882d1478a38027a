"""Errors the server turns into gRPC status codes, with messages meant for the caller."""
from __future__ import annotations

from typing import Iterable

import grpc


class ServingError(Exception):
    """A request the server refuses; ``code`` is the gRPC status the client receives."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServingError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(ServingError):
    code = grpc.StatusCode.UNIMPLEMENTED


class ConfigError(ValueError):
    """A models.config (or the flags standing for one) that cannot be served; names the entry."""


SHOWN_CHARS = 100  # of one user-supplied string in a message
SHOWN_ITEMS = 5  # of a user-supplied list in a message
# of a whole status message, in UTF-8 bytes: gRPC percent-encodes every non-ASCII byte (3 characters
# each) into the trailing metadata, and refuses metadata over 8 KiB
MAX_STATUS_BYTES = 2000


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis and the full length when cut."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A user-supplied string (or name) quoted for a message, cut to ``limit`` characters.

    Every client-controlled string goes through here before it reaches a status message or the
    log, so a 10 KB name cannot push the real error out of gRPC's trailing metadata.
    """
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def shown_list(values: Iterable[object], limit: int = SHOWN_ITEMS) -> str:
    """A user-supplied list the way ``shown`` quotes one string: at most ``limit`` items, each cut."""
    items = list(values)
    more = [f"... {len(items) - limit} more"] if len(items) > limit else []
    return "[" + ", ".join([shown(v) for v in items[:limit]] + more) + "]"


def status_message(message: str) -> str:
    """A whole status message kept under gRPC's metadata limit: the last guard after ``shown``."""
    data = message.encode("utf-8")
    if len(data) <= MAX_STATUS_BYTES:
        return message
    return data[:MAX_STATUS_BYTES].decode("utf-8", "ignore") + f"... ({len(data)} bytes)"
