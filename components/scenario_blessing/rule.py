"""The blessing rule of ScenarioBlessing, and reading TFMA's metrics back.

TFMA computes AUC, logloss, calibration and counts, overall and per scenario, for the candidate and
the production (baseline) model, the one pushed last. The blessing rule is msrec's own (``decide``,
run by the ScenarioBlessing component) because it must skip scenarios too small to judge, which
TFMA's per-slice thresholds cannot express: overall and in every scenario with at least
``min_slice_size`` eval samples, the candidate's AUC is at or above ``auc_floor`` and not below the
production model's by more than ``auc_delta``. Smaller scenarios are reported, not gated.

A scenario of a thousand samples and a few dozen clicks has an AUC standard error of several points,
so a strict per-scenario delta rejects almost every retrain by chance (one of twenty scenarios
"regresses" each day). A scenario's drop therefore fails the gate only beyond ``auc_delta`` plus
``noise_z`` standard errors of the difference of the two AUCs (Hanley & McNeil, from the slice's
clicks and non-clicks; both models are scored on the same examples, so this unpaired error is an
upper bound and ``noise_z`` = 1 is a moderate allowance). The overall slice, the most precise one,
keeps the strict delta. ``noise_z`` = 0 makes every slice strict.

The absolute floor gets the same allowance: a scenario fails it only when its AUC is significantly
below it (auc + ``noise_z`` * SE < floor), since a scenario of two dozen clicks lands under any
floor by chance; the overall slice must clear the floor by ``noise_z`` standard errors (auc - z * SE
>= floor), so a model no better than chance is not pushed on a lucky eval split.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import tensorflow_model_analysis as tfma

from msrec.auc import auc_standard_error

SCENARIO_SLICE = "scenario_id"
CANDIDATE, BASELINE = "candidate", "baseline"


def _slice_name(slice_key: Any) -> str:
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        return single.bytes_value.decode() if kind == "bytes_value" else str(getattr(single, kind))
    return "overall"


def read_metrics(evaluation_uri: str, model_name: str = CANDIDATE) -> dict[str, Any]:
    """{"overall": {...}, "per_scenario": {scenario_id: {...}}} with auc, logloss, count, calibration.
    Empty when the evaluation holds no metrics of ``model_name`` (no baseline on a first run)."""
    out: dict[str, Any] = {"overall": {}, "per_scenario": {}}
    for m in tfma.load_metrics(evaluation_uri):
        values = {}
        for kv in m.metric_keys_and_values:
            k = kv.key
            if k.is_diff or k.model_name not in (model_name, ""):
                continue
            values[k.name] = float(kv.value.double_value.value)
        if "example_count" not in values:
            continue
        row = {"auc": values.get("auc", math.nan), "logloss": values.get("binary_crossentropy", math.nan),
               "count": int(values["example_count"]), "mean_label": values.get("mean_label", math.nan),
               "mean_prediction": values.get("mean_prediction", math.nan),
               "calibration": values.get("calibration", math.nan)}
        name = _slice_name(m.slice_key)
        if name == "overall":
            out["overall"] = row
        else:
            out["per_scenario"][name] = row
    return out


@dataclasses.dataclass(frozen=True)
class BlessingRule:
    auc_floor: float = 0.55
    auc_delta: float = 0.01
    min_slice_size: int = 1000
    noise_z: float = 1.0


def _standard_error(m: Mapping[str, Any]) -> float:
    return auc_standard_error(m["auc"], m["count"], m.get("mean_label", math.nan))


def _floor_allowance(where: str, cand: Mapping[str, Any], rule: BlessingRule) -> float:
    """What a slice's AUC may fall short of the floor by. A scenario gets the benefit of the doubt
    (+z standard errors: blocking needs evidence); the overall slice must clear the floor by z standard
    errors (pushing needs evidence), so a model at chance, e.g. trained on shuffled labels, is not
    pushed on a lucky eval split."""
    if rule.noise_z <= 0:
        return 0.0
    sign = -1.0 if where == "overall" else 1.0
    return sign * rule.noise_z * _standard_error(cand)


def _allowed_drop(where: str, cand: Mapping[str, Any], base: Mapping[str, Any], rule: BlessingRule) -> float:
    if where == "overall" or rule.noise_z <= 0:
        return rule.auc_delta
    return rule.auc_delta + rule.noise_z * math.hypot(_standard_error(cand), _standard_error(base))


def decide(candidate: Mapping[str, Any], baseline: Mapping[str, Any] | None, rule: BlessingRule
           ) -> tuple[bool, str]:
    """(blessed, reason). The reason names every scenario, and the metric, that failed."""
    slices = [("overall", candidate["overall"], (baseline or {}).get("overall"))]
    slices += [(f"scenario {s}", m, (baseline or {}).get("per_scenario", {}).get(s))
               for s, m in sorted(candidate["per_scenario"].items())]
    failures, notes, gated = [], [], 0
    for where, cand, base in slices:
        if where != "overall" and cand["count"] < rule.min_slice_size:
            continue
        gated += 1
        auc = cand["auc"]
        slack = _floor_allowance(where, cand, rule)
        if not auc + slack >= rule.auc_floor:  # also catches NaN (one class only)
            noise = (f" by more than sampling noise ({slack:.4f})" if slack > 0 else
                     f" plus {-slack:.4f} ({rule.noise_z:g} standard errors)" if slack < 0 else "")
            below = f"{where}: auc {auc:.4f} below the floor {rule.auc_floor:.4f}{noise}"
            # A scenario's floor blocks a model that would bring it below the floor; where production is
            # below it too (or there is no production model, so nothing serves at all), pushing the
            # candidate loses nothing there, and the delta rule still stops a regression.
            if where == "overall" or (base and base.get("auc", math.nan) >= rule.auc_floor):
                failures.append(below)
            else:
                notes.append(below + (", as is the production model" if base else ", with no production model"))
        if base and not math.isnan(base.get("auc", math.nan)):
            allowed = _allowed_drop(where, cand, base, rule)
            if auc < base["auc"] - allowed:
                noise = f" (delta {rule.auc_delta:.4f} + sampling noise)" if allowed > rule.auc_delta else ""
                failures.append(f"{where}: auc {auc:.4f} fell below the production model's {base['auc']:.4f} "
                                f"by more than {allowed:.4f}{noise}")
    if failures:
        return False, "; ".join(failures + notes)
    against = (f"and within delta (+ {rule.noise_z:g} standard errors per scenario) of the production model"
               if baseline else "(no production model yet)")
    return True, (f"overall and {gated - 1} scenarios with >= {rule.min_slice_size} eval samples: "
                  f"AUC at or above {rule.auc_floor:.4f} (overall by {rule.noise_z:g} standard errors, per "
                  f"scenario within them) {against}" + "".join(f"; not blocking: {n}" for n in notes))
