"""Errors the server turns into gRPC status codes, with messages meant for the caller."""
from __future__ import annotations

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
