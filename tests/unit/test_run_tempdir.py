"""The local runner's temporary folder: what libraries leave there during a run goes when it ends."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from msrec.pipeline.daily import run_tempdir


def test_files_of_the_run_and_of_its_child_processes_are_removed_after_it(tmp_path: Path) -> None:
    before_env, before_dir = os.environ.get("TMPDIR"), tempfile.gettempdir()
    with run_tempdir(str(tmp_path)) as path:
        left = tempfile.mkdtemp()  # as TFX builds its package for Beam workers, never removed
        Path(left, "package.tar.gz").write_bytes(b"x" * 1000)
        child = subprocess.run(["bash", "-c", 'mktemp -d'], capture_output=True, text=True, check=True)
        assert Path(left).parent == Path(path) == Path(child.stdout.strip()).parent
        assert Path(path).parent == tmp_path / "tmp"
    assert not Path(path).exists() and os.listdir(tmp_path / "tmp") == []
    assert os.environ.get("TMPDIR") == before_env and tempfile.gettempdir() == before_dir


def test_the_folder_goes_and_the_settings_come_back_when_the_run_fails(tmp_path: Path) -> None:
    before = tempfile.gettempdir()
    with pytest.raises(RuntimeError):
        with run_tempdir(str(tmp_path)) as path:
            tempfile.mkstemp()
            raise RuntimeError("a component failed")
    assert not Path(path).exists() and tempfile.gettempdir() == before
