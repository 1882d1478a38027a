"""``msrec serve``'s flags: tensorflow_model_server's names, plus the request limits with their why.

Kept apart from server.py so that ``msrec --help`` does not import TensorFlow.
"""
from __future__ import annotations

import argparse

from msrec.serving.limits import DEFAULT_MAX_CANDIDATES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_SEQUENCE_LENGTH

LIMITS_HELP = """\
request limits (checked on the request before anything is decoded; over a limit: INVALID_ARGUMENT):
  every input may hold at most --max_candidates rows times --max_sequence_length per unknown inner
  dimension, counted after broadcasting (a sequence input [?, ?] at most max_candidates x
  max_sequence_length strings), and a whole request may decode to at most --max_message_bytes
  (broadcast values included, which the gRPC limit alone does not see). The defaults keep one
  request well under a second and a few hundred MB on a 2-core machine; see deploy/README.md."""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = LIMITS_HELP
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless told)")
    parser.add_argument("--model_name", "--model-name", dest="model_name", default=None)
    parser.add_argument("--model_base_path", "--model-base-path", dest="model_base_path", default=None)
    parser.add_argument("--model_config_file", "--model-config-file", dest="model_config_file", default=None)
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    parser.add_argument("--max_num_load_retries", type=int, default=5)
    parser.add_argument("--max_candidates", type=int, default=DEFAULT_MAX_CANDIDATES,
                        help="rows (candidates or tf.Examples) per request (default %(default)s: "
                             "10,000 took 3.8 s and 470 MB with the toy model)")
    parser.add_argument("--max_sequence_length", type=int, default=DEFAULT_MAX_SEQUENCE_LENGTH,
                        help="budget of each unknown inner dimension (a behaviour sequence's length, "
                             "a multi-valued feature's width) and of one tf.Example feature's values "
                             "(default %(default)s, twice the default feature config's sequence.length)")
    parser.add_argument("--max_message_bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="size of one gRPC message, and of what one request decodes to "
                             "(default %(default)s = 64 MiB)")
    parser.add_argument("--ssl_cert", default=None)
    parser.add_argument("--ssl_key", default=None)
