"""The built wheel stands on its own: one top-level package, the schemas inside it as package data."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_has_only_msrec_at_its_top_and_carries_the_schemas(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("msrec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"msrec"}
    for member in ("msrec/schemas/schema.pbtxt", "msrec/schemas/feature_config.yaml",
                   "msrec/pipeline/pipeline.py", "msrec/components/log_example_gen/component.py",
                   "msrec/models/training/trainer.py", "msrec/models/layers/embedding.py"):
        assert member in names, member
