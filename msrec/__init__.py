"""msrec: a multi-scenario CTR ranking pipeline on TensorFlow Extended."""
import os

# tensorflow-recommenders and the tf.Transform Keras layer need Keras 2; this must be set before
# TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
