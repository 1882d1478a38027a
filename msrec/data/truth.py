"""Reading a generated dataset's ground truth (``OUT/truth``), and the oracle AUC it allows.

The truth folder holds what no model may see: the click probability of every impression written
uncorrupted to the logs (and whether an intervention forced it), the interventions and the corruption
counts; the world card (every knob of the generator) lies beside it, ``OUT/world.json``.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msrec.auc import auc

TRUTH = "truth"
PROBABILITIES = "probabilities"
INTERVENTIONS = "interventions.jsonl"
WORLD = "world.json"
CORRUPTIONS = "corruptions.json"
TRUTH_COLUMNS = ("impression_id", "scenario_id", "item_id", "p_click", "click", "forced")


def truth_dir(path: str | os.PathLike[str]) -> Path:
    """The truth folder given either a dataset's output folder or the truth folder itself."""
    path = Path(path)
    return path / TRUTH if (path / TRUTH).is_dir() else path


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"no truth file {path}: is this the output folder of `msrec generate`?") from None


def load_truth(path: str | os.PathLike[str], date: str | dt.date) -> pd.DataFrame:
    """One day's truth: impression_id, scenario_id, item_id, p_click, click, forced (log order)."""
    day = date.isoformat() if isinstance(date, dt.date) else str(date)
    csv = truth_dir(path) / PROBABILITIES / f"{day}.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"no truth file {csv}: was {day} generated?")
    return pd.read_csv(csv, dtype={"impression_id": str, "scenario_id": str, "item_id": str,
                                   "p_click": np.float64, "click": np.int8,
                                   "forced": np.int8})


def load_interventions(path: str | os.PathLike[str]) -> set[tuple[str, str, str]]:
    """Every intervened (date 'YYYY-MM-DD', item_id, scenario_id)."""
    text = _read(truth_dir(path) / INTERVENTIONS)
    rows = (json.loads(line) for line in text.splitlines() if line.strip())
    return {(r["date"], r["item_id"], r["scenario_id"]) for r in rows}


def load_world(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The world card of a dataset, given its output folder or its truth folder."""
    return json.loads(_read(truth_dir(path).parent / WORLD))


def load_corruptions(path: str | os.PathLike[str]) -> dict[str, int]:
    return json.loads(_read(truth_dir(path) / CORRUPTIONS))


def expected_auc(scores: np.ndarray, p_click: np.ndarray) -> float:
    """The AUC ``scores`` reach on average over the click draws of the true probabilities ``p_click``
    (expected ordered click/non-click pairs over expected pairs, ties counting half): the same rows
    with other draws of their clicks move a day's AUC by about its standard error, this does not.
    Equals :func:`auc` when every probability is 0 or 1."""
    scores = np.asarray(scores, dtype=np.float64)
    p = np.asarray(p_click, dtype=np.float64)
    if scores.shape != p.shape:
        raise ValueError(f"scores {scores.shape} and probabilities {p.shape} differ in shape")
    q = 1.0 - p
    pairs = p.sum() * q.sum() - (p * q).sum()  # an impression is never paired with itself
    if pairs <= 0:
        return float("nan")
    _, group = np.unique(scores, return_inverse=True)  # tie groups, lowest score first
    clicks, skips = np.bincount(group, weights=p), np.bincount(group, weights=q)
    below = np.cumsum(skips) - skips  # expected non-clicks scored below each group
    within = clicks * skips - np.bincount(group, weights=p * q)  # pairs inside a group, self left out
    return float(((clicks * below).sum() + 0.5 * within.sum()) / pairs)


def oracle_auc(df: pd.DataFrame, by_scenario: bool = False) -> float | dict[str, float]:
    """AUC of the true p_click against the realised clicks: the ceiling any model can reach."""
    if not by_scenario:
        return auc(df["p_click"].to_numpy(), df["click"].to_numpy())
    return {str(s): auc(g["p_click"].to_numpy(), g["click"].to_numpy())
            for s, g in df.groupby("scenario_id", sort=True)}
