"""What long commands print while they run."""
from __future__ import annotations

import logging
import sys


def show_progress() -> None:
    """TFX reports each component's start and end through absl at INFO; Beam and TensorFlow are
    far chattier at INFO, so only absl and msrec's own loggers are raised to it."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("absl", "msrec"):
        logging.getLogger(name).setLevel(logging.INFO)
