"""The package stands on its own: the built wheel, installed into a fresh virtual environment beside the
locked dependencies, runs the daily pipeline from a folder far from the checkout (schemas and configs
are package data; nothing is found through the checkout's path)."""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

from msrec.data.generator import generate

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_runs_the_pipeline_away_from_the_checkout(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("msrec-*.whl")
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    fresh_site = next((fresh / "lib").glob("python3.*/site-packages"))
    # the locked dependencies of this environment, without its editable msrec: a plain path line adds
    # the folder to sys.path but does not run the .pth files in it (the checkout's import hook)
    (fresh_site / "locked_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(fresh / "bin" / "python"), "-c", "import msrec.schemas; print(msrec.schemas.__file__)"],
                           cwd=elsewhere, check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(fresh_site)) and not where.startswith(str(REPO)), where

    data = generate(tmp_path / "data", days=2, impressions_per_day=6_000, seed=2, progress=False)
    work = tmp_path / "work"
    done = subprocess.run([str(fresh / "bin" / "msrec"), "run", "--logs", str(data.logs_dir), "--date", data.dates[-1],
                           "--workdir", str(work), "--window", "2", "--max-epochs", "2", "--auc-floor", "0.5"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((work / "reports" / data.dates[-1] / "report.json").read_text())
    assert report["pushed_version"] and not report.get("error")
