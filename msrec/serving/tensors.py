"""TensorProto <-> numpy in bulk, and the checks of a request's tensors (their headers) against a signature.

Shared by the server and the client. Every conversion touches a whole repeated field or byte
buffer at once (``list(string_val)``, ``np.fromiter``, ``np.frombuffer``): no Python work per
candidate, which is what keeps a 500-candidate request cheap.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from msrec.serving.errors import InvalidArgument, shown, shown_list
from msrec.serving.limits import RequestLimits


@dataclasses.dataclass(frozen=True)
class _Kind:
    numpy: np.dtype
    field: str  # the TensorProto repeated field that holds values of this dtype


_KINDS: dict[int, _Kind] = {
    types_pb2.DT_FLOAT: _Kind(np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: _Kind(np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: _Kind(np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT64: _Kind(np.dtype(np.int64), "int64_val"),
    types_pb2.DT_BOOL: _Kind(np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_STRING: _Kind(np.dtype(object), "string_val"),
}
_NUMPY_TO_DT = {kind.numpy: dt for dt, kind in _KINDS.items() if dt != types_pb2.DT_STRING}


def dtype_name(dtype: int) -> str:
    """``DT_FLOAT`` style name of a DataType enum value (as TF Serving's messages spell it)."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype a DataType decodes to (object for strings)."""
    try:
        return _KINDS[dtype].numpy
    except KeyError:
        raise ValueError(f"dtype {dtype_name(dtype)} is not supported") from None


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One signature input: its DataType enum and its shape (None = unknown dim / rank)."""

    name: str
    dtype: int
    shape: tuple[int | None, ...] | None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name}: {dtype_name(self.dtype)} {dims}"


MAX_RANK = 254  # TensorFlow's TensorShape::MaxDimensions()


def value_field(dtype: int) -> str | None:
    """The TensorProto field that holds values of ``dtype`` (None when not supported)."""
    kind = _KINDS.get(dtype)
    return kind.field if kind else None


@dataclasses.dataclass(frozen=True)
class TensorHeader:
    """What the checks need of one TensorProto, read without turning its values into Python objects."""

    name: str
    dtype: int
    dims: tuple[int, ...]
    unknown_rank: bool = False
    content_bytes: int = 0  # len(tensor_content); always 0 for strings, whose content TensorFlow ignores
    field_count: int = 0  # values in the dtype's repeated field (float_val, string_val, ...)
    string_bytes: int = 0
    finite: bool = True


def header_of(proto: tensor_pb2.TensorProto, name: str = "tensor") -> TensorHeader:
    """The header of a parsed TensorProto (the client's view of a response)."""
    field = value_field(proto.dtype)
    values = getattr(proto, field) if field else ()
    return TensorHeader(name=name, dtype=proto.dtype, dims=tuple(int(d.size) for d in proto.tensor_shape.dim),
                        unknown_rank=proto.tensor_shape.unknown_rank,
                        content_bytes=0 if proto.dtype == types_pb2.DT_STRING else len(proto.tensor_content),
                        field_count=len(values))


def header_shape(header: TensorHeader) -> tuple[int, ...]:
    name = header.name
    if header.unknown_rank:
        raise InvalidArgument(f"input {shown(name)}: the tensor has an unknown rank; send its shape")
    if len(header.dims) > MAX_RANK:
        raise InvalidArgument(f"input {shown(name)}: rank {len(header.dims)} is over TensorFlow's {MAX_RANK}")
    if any(d < 0 for d in header.dims):
        raise InvalidArgument(f"input {shown(name)}: shape {list(header.dims)} has a negative dimension")
    return header.dims


def _kind(header: TensorHeader) -> _Kind:
    kind = _KINDS.get(header.dtype)
    if kind is None:
        raise InvalidArgument(f"input {shown(header.name)}: dtype {dtype_name(header.dtype)} is not supported; "
                              f"use one of {sorted(dtype_name(d) for d in _KINDS)}")
    return kind


def value_count(header: TensorHeader) -> int:
    """How many values the tensor carries: tensor_content's, when set, else its repeated field's."""
    kind = _kind(header)
    if header.content_bytes:
        size, item = header.content_bytes, kind.numpy.itemsize
        if size % item:
            raise InvalidArgument(f"input {shown(header.name)}: tensor_content holds {size} bytes, not a "
                                  f"multiple of the {item} bytes of one {dtype_name(header.dtype)}")
        return size // item
    return header.field_count


def _check_fill(shape: tuple[int, ...], count: int, name: str) -> None:
    if count != math.prod(shape) and count != 1:
        raise InvalidArgument(f"input {shown(name)}: shape {list(shape)} needs {math.prod(shape)} values "
                              f"but the tensor holds {count}")


def to_ndarray(proto: tensor_pb2.TensorProto, name: str = "tensor") -> np.ndarray:
    """Decode a TensorProto; ``InvalidArgument`` if its values do not fill its shape.

    A single value for a larger shape is broadcast, as TensorFlow's own decoder does.
    """
    header = header_of(proto, name)
    shape = header_shape(header)
    kind = _kind(header)
    count = value_count(header)
    _check_fill(shape, count, name)
    if header.content_bytes:
        flat = np.frombuffer(proto.tensor_content, dtype=kind.numpy)
    else:
        values = getattr(proto, kind.field)
        if proto.dtype == types_pb2.DT_STRING:
            flat = np.array(list(values), dtype=object)
        else:
            flat = np.fromiter(values, dtype=kind.numpy, count=count)
    if flat.size == math.prod(shape):
        return flat.reshape(shape)
    return np.full(shape, flat[0], dtype=kind.numpy)


def non_finite(header: TensorHeader, flat: np.ndarray) -> InvalidArgument:
    """The refusal of an input whose header says it holds a NaN or infinite float (they would come
    back as NaN scores); ``flat``: its values."""
    bad = ~np.isfinite(flat)
    return InvalidArgument(f"input {shown(header.name)} holds {flat[bad][0]} at flat index "
                          f"{int(np.flatnonzero(bad)[0])}; inputs must be finite")


def _as_dt(array: np.ndarray) -> int:
    if array.dtype.kind in ("O", "U", "S"):
        return types_pb2.DT_STRING
    try:
        return _NUMPY_TO_DT[array.dtype]
    except KeyError:
        raise TypeError(f"numpy dtype {array.dtype} has no TensorProto encoding here; "
                        f"use one of {sorted(str(d) for d in _NUMPY_TO_DT)} or strings") from None


def _encode(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"string tensor holds a {type(value).__name__} ({value!r}); expected str or bytes")


def fill_tensor_proto(array: np.ndarray, proto: tensor_pb2.TensorProto) -> tensor_pb2.TensorProto:
    """Write ``array`` into ``proto`` (e.g. ``response.outputs[name]``) in the value fields.

    Values go to ``float_val`` / ``string_val`` ... rather than ``tensor_content``: that is what
    TensorFlow Serving's gRPC Predict answers with, so clients reading ``.float_val`` work too.
    """
    array = np.asarray(array)
    dt = _as_dt(array)
    proto.dtype = dt
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]))
    flat = array.reshape(-1)
    if dt == types_pb2.DT_STRING:
        if array.dtype.kind == "S":
            proto.string_val.extend(flat.tolist())
        else:
            proto.string_val.extend([_encode(v) for v in flat.tolist()])
    else:
        getattr(proto, _KINDS[dt].field).extend(flat.tolist())
    return proto


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    return fill_tensor_proto(array, tensor_pb2.TensorProto())


def check_input_names(names: Iterable[str], specs: Mapping[str, InputSpec], signature: str) -> None:
    """Raises ``InvalidArgument`` naming unknown or missing inputs and listing what the signature expects."""
    names = set(names)
    unknown = sorted(names - set(specs))
    missing = sorted(set(specs) - names)
    if unknown or missing:
        expected = "; ".join(specs[n].describe() for n in sorted(specs))
        what = f"unknown input(s) {shown_list(unknown)}" if unknown else f"missing input(s) {shown_list(missing)}"
        raise InvalidArgument(f"{what} for signature {shown(signature)}; expected inputs: {expected}")


def check_request_tensors(tensors: Mapping[str, TensorHeader], specs: Mapping[str, InputSpec],
                          signature: str, limits: RequestLimits) -> None:
    """Check names, dtypes, shapes, the batch size and what the tensors decode to, on their headers.

    Runs before any value is broadcast to its shape, so no request allocates more than ``limits``
    allow. Raises ``InvalidArgument`` with a message that lists what the signature expects.
    """
    check_input_names(tensors, specs, signature)
    batch: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in sorted(tensors):
        header, spec = tensors[name], specs[name]
        if header.dtype != spec.dtype:
            raise InvalidArgument(f"input {name!r} has dtype {dtype_name(header.dtype)}; signature "
                                  f"{shown(signature)} expects {spec.describe()}")
        if spec.shape is not None and len(header.dims) != len(spec.shape):
            raise InvalidArgument(f"input {name!r} has shape {_spell(header)} (rank "
                                  f"{len(header.dims)}); signature {shown(signature)} expects "
                                  f"{spec.describe()} (rank {len(spec.shape)})")
        shape = shapes[name] = header_shape(header)
        if spec.shape is not None:
            for axis, (got, want) in enumerate(zip(shape, spec.shape)):
                if want is not None and got != want:
                    raise InvalidArgument(f"input {name!r} has shape {list(shape)}; dimension {axis} "
                                          f"must be {want} ({spec.describe()})")
            if spec.shape and spec.shape[0] is None:
                batch[name] = shape[0]
    sizes = set(batch.values())
    if len(sizes) > 1:
        groups = []
        for size in sorted(sizes):
            names = [n for n, b in batch.items() if b == size]
            shown_names = names if len(names) <= 5 else names[:5] + [f"... {len(names) - 5} more"]
            groups.append(f"{size} rows in {shown_names}")
        raise InvalidArgument("inputs disagree on the batch size (dimension 0): " + "; ".join(groups)
                              + "; every input needs one row per candidate")
    if sizes and max(sizes) > limits.max_candidates:
        raise InvalidArgument(f"the request holds {max(sizes)} candidates; this server accepts at most "
                              f"{limits.max_candidates} per request (--max_candidates): split the request")
    decoded = 0
    for name in sorted(tensors):
        decoded += _check_size(tensors[name], specs[name], shapes[name], limits)
    if decoded > limits.max_message_bytes:
        raise InvalidArgument(f"the request decodes to {decoded:,} bytes (broadcasts included); this "
                              f"server accepts at most {limits.max_message_bytes:,} (--max_message_bytes)")


def _spell(header: TensorHeader) -> str:
    dims = [str(d) for d in header.dims[:8]]
    return "[" + ", ".join(dims) + (", ...]" if len(header.dims) > 8 else "]")


def _check_size(header: TensorHeader, spec: InputSpec, shape: tuple[int, ...], limits: RequestLimits) -> int:
    """Refuse an input that holds more elements than its budget; return the bytes it decodes to."""
    kind = _kind(header)
    count = value_count(header)
    _check_fill(shape, count, spec.name)
    elements, budget = math.prod(shape), limits.max_elements(spec.shape)
    if elements > budget:
        raise InvalidArgument(f"input {spec.name!r} has shape {list(shape)}: {elements:,} elements after "
                              f"broadcasting; {spec.describe()} may hold at most {budget:,} here "
                              f"(--max_candidates rows x --max_sequence_length per unknown inner dimension)")
    if header.dtype != types_pb2.DT_STRING:
        return elements * kind.numpy.itemsize
    if count == 1 and elements > 1:  # a broadcast string is copied into every element
        return header.string_bytes * elements
    return header.string_bytes


