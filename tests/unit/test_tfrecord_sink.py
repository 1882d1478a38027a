"""WriteGzipTFRecords writes what TensorFlow writes and reads back: the framing and checksums of TF's
own writer, gzip that TFRecordDataset and TFX read, Beam's file names."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import glob
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from msrec.components.tfrecord_sink import WriteGzipTFRecords, tfrecord


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8))
def test_records_are_framed_byte_for_byte_as_tensorflows_writer_frames_them(tmp_path_factory: Any,
                                                                               records: list[bytes]) -> None:
    path = str(tmp_path_factory.mktemp("tf") / "records")
    with tf.io.TFRecordWriter(path) as writer:
        for r in records:
            writer.write(r)
    assert b"".join(tfrecord(r) for r in records) == open(path, "rb").read()


def test_a_beam_write_is_read_back_whole_by_tensorflow(tmp_path: Any) -> None:
    records = [b"", b"x", os.urandom(70_000)] + [f"example {k}".encode() * (k % 50) for k in range(3000)]
    prefix = str(tmp_path / "Split-train" / "data_tfrecord")
    with beam.Pipeline() as p:
        _ = p | beam.Create(records) | WriteGzipTFRecords(prefix)
    files = glob.glob(str(tmp_path / "Split-train" / "*"))
    assert files and all(f.startswith(prefix + "-") and f.endswith(".gz") for f in files)
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]  # checks every CRC
    assert sorted(read) == sorted(records)
