"""TensorFlow Serving's MonitoringConfig and BatchingParameters messages, for checking deploy/ files.

The ``tensorflow-serving-api`` wheel ships ModelServerConfig but not these two, which the official
server reads from ``--monitoring_config_file`` and ``--batching_parameters_file``. They are
declared here with the official package, message names, field names, numbers and types
(tensorflow_serving/config/monitoring_config.proto and
tensorflow_serving/servables/tensorflow/session_bundle_config.proto at 2.16.1), in a private
descriptor pool, so ``text_format`` accepts and refuses exactly what the server would.
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message, text_format, wrappers_pb2
from google.protobuf import message_factory

_F = descriptor_pb2.FieldDescriptorProto


def field_descriptor(name: str, number: int, type_: int, type_name: str = "", repeated: bool = False) -> _F:
    field = _F(name=name, number=number, type=type_,
               label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:  # set only for message fields: an empty type_name still counts as set
        field.type_name = type_name
    return field


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    i64, s, b = ".google.protobuf.Int64Value", ".google.protobuf.StringValue", ".google.protobuf.BoolValue"
    msg = _F.TYPE_MESSAGE
    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving",
        syntax="proto3", message_type=[
            descriptor_pb2.DescriptorProto(name="PrometheusConfig", field=[
                field_descriptor("enable", 1, _F.TYPE_BOOL), field_descriptor("path", 2, _F.TYPE_STRING)]),
            descriptor_pb2.DescriptorProto(name="MonitoringConfig", field=[
                field_descriptor("prometheus_config", 1, msg, ".tensorflow.serving.PrometheusConfig")]),
        ])
    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving", syntax="proto3", dependency=["google/protobuf/wrappers.proto"],
        message_type=[descriptor_pb2.DescriptorProto(name="BatchingParameters", field=[
            field_descriptor("max_batch_size", 1, msg, i64),
            field_descriptor("batch_timeout_micros", 2, msg, i64),
            field_descriptor("max_enqueued_batches", 3, msg, i64),
            field_descriptor("num_batch_threads", 4, msg, i64),
            field_descriptor("thread_pool_name", 5, msg, s),
            field_descriptor("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
            field_descriptor("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
            field_descriptor("enable_large_batch_splitting", 8, msg, b),
            field_descriptor("max_execution_batch_size", 9, msg, i64),
        ])])
    pool.Add(monitoring)
    pool.Add(batching)
    return pool


_POOL = _build_pool()
_FACTORY = message_factory.MessageFactory(_POOL)
MonitoringConfig = _FACTORY.GetPrototype(_POOL.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
BatchingParameters = _FACTORY.GetPrototype(_POOL.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def parse_text(text: str, message_class: type[message.Message]) -> message.Message:
    """Parse text format into a new ``message_class``; ``text_format.ParseError`` names the line."""
    parsed = message_class()
    text_format.Parse(text, parsed, descriptor_pool=_POOL)
    return parsed
