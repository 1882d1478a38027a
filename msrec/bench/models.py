"""``msrec bench models``: every model trained on the same generated window with the same budget and
evaluated on the same eval day, over several seeds, as a per-scenario AUC table like the papers'.

The window goes through the real pipeline once (ingestion, FairnessGen, Transform); every model
then trains in-process on those transformed examples with the pipeline's own training loop
(loop.train_model: early stopping on the val split), so the comparison is of models only.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

import msrec  # noqa: F401
import numpy as np

from msrec.bench.machine import format_machine, machine_info
from msrec.data.generator import generate
from msrec.auc import auc
from msrec.data.truth import load_truth, oracle_auc
from msrec.schemas.feature_config import load_feature_config
from msrec.pipeline import daily
from msrec.pipeline.scenario_registry import SCENARIO_INDEX
from msrec.progress import show_progress
from msrec.pipeline.report import relaimpr

SEED_MODELS = ("sarnet", "hierrec", "sfpnet", "hmdn_mmoe", "hmdn_pepnet", "optmsm")
BASELINES = ("mix", "single", "shared_bottom", "mmoe", "cgc", "ple", "star", "pepnet", "adasparse")
INFERENCE_BATCH = 2000


def _latest(pattern: str) -> str:
    paths = sorted(glob.glob(pattern), key=lambda p: int(os.path.basename(p)))
    if not paths:
        raise FileNotFoundError(f"nothing matches {pattern}: did the pipeline run reach Transform?")
    return paths[-1]


PREPARED = "prepared.json"
RUNS_JOURNAL = "bench_models_runs.jsonl"


FC_MODEL = "sarnet"  # the pipeline whose blessed model gives the window's FC, and whose Transform it reads


def prepare(out_dir: str, days: int, per_day: int, logs: str | None = None, **split: int) -> dict[str, Any]:
    """Generate the window (or take the user's ``logs``: its newest ``days`` days) and run the
    pipeline up to Transform once to get its transformed examples (``split``: eval_days, val_days).

    The window's FC comes from a blessed model, as in the daily loop, not from the bootstrap: the day
    before the window (generated as one more day; in the user's logs where there is one) runs the
    whole pipeline first, and FairnessGen then scores the window with the model it pushed. Without
    such a day, or when that model is not pushed, the FC is the bootstrap's 1 and ``fc_source`` says so.
    A window already prepared in ``out_dir`` with the same shape is reused, so that more seeds or
    models can be added to a run without paying for ingestion again."""
    marker = os.path.join(out_dir, PREPARED)
    shape = {"days": days, "impressions_per_day": per_day, "logs": logs and os.path.abspath(logs),
             "fc": "blessed", **split}
    workdir = os.path.join(out_dir, "work")
    data_dir = os.path.join(out_dir, "data")
    logs_dir = logs or os.path.join(data_dir, "logs")
    prepared = _read(marker)
    if not prepared or prepared.get("shape") != shape:
        if os.path.exists(os.path.join(out_dir, RUNS_JOURNAL)):
            os.remove(os.path.join(out_dir, RUNS_JOURNAL))  # results of another window
        shutil.rmtree(workdir, ignore_errors=True)
        if logs is None:
            generate(data_dir, days=days + 1, impressions_per_day=per_day, seed=0, progress=False)
        dates = sorted(d for d in os.listdir(logs_dir) if d[:1].isdigit())
        fc_source = "bootstrap (FC = 1): no day before the window"
        if len(dates) > days:
            fc_day = dates[-days - 1]
            rep = daily.run_day(logs_dir, fc_day, workdir, model=FC_MODEL, window=1)
            fc_source = (f"{FC_MODEL} trained on {fc_day} and pushed" if rep.get("pushed_version") else
                         f"bootstrap (FC = 1): the {FC_MODEL} run on {fc_day} pushed nothing "
                         f"({rep.get('error') or rep.get('blessing_reason')})")
        rep = daily.run_day(logs_dir, dates[-1], workdir, model=FC_MODEL, window=days, stop_after="transform", **split)
        if rep.get("error"):
            raise RuntimeError(f"the pipeline run that prepares the window failed: {rep['error']}")
        prepared = {"shape": shape, "fc_source": fc_source, "fc": rep.get("fc")}
        with open(marker, "w") as fh:
            json.dump(prepared, fh)
    window = transformed_window(logs_dir, os.path.join(data_dir, "truth"), workdir, FC_MODEL)
    window["dates"] = window["dates"][-days:]
    return {**window, "fc_source": prepared["fc_source"], "fc": prepared["fc"]}


def transformed_window(logs: str, truth: str, workdir: str, model: str) -> dict[str, Any]:
    """What ``train_and_evaluate`` needs from a pipeline run of ``model`` that reached Transform: the
    examples Transform wrote when the run stopped there, else FairnessGen's (``transformed`` False:
    read through the Transform graph, as the pipeline's Trainer reads them)."""
    pipeline = os.path.join(workdir, "pipeline", model)
    root = os.path.join(pipeline, "Transform")
    transformed = bool(glob.glob(os.path.join(root, "transformed_examples", "*")))
    examples = (os.path.join(root, "transformed_examples", "*") if transformed else
                os.path.join(pipeline, "FairnessGen", "weighted_examples", "*"))
    return {"logs": logs, "truth": truth,
            "dates": sorted(d for d in os.listdir(logs) if d[:1].isdigit()),
            "transform_graph": _latest(os.path.join(root, "transform_graph", "*")),
            "examples": _latest(examples), "transformed": transformed,
            "scenarios": _read(os.path.join(workdir, SCENARIO_INDEX)),
            "config": load_feature_config(os.path.join(logs, "feature_config.yaml"))}


def eval_counts(prep: Mapping[str, Any]) -> dict[str, int]:
    """Eval examples per scenario id, read from the transformed eval split."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from msrec.models.training.trainer import feature_spec

    tft_output = tft.TFTransformOutput(prep["transform_graph"])
    scenario = feature_spec(prep["config"], tft_output, prep["scenarios"]).scenario_feature
    spec = {scenario: tft_output.transformed_feature_spec()[scenario]}
    files = tf.io.gfile.glob(os.path.join(prep["examples"], "Split-eval", "*"))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(16384).map(lambda b: tf.io.parse_example(b, spec))
    index = np.concatenate([b[scenario].numpy().reshape(-1) for b in ds])
    names = {i + 1: sid for i, sid in enumerate(prep["scenarios"])}
    values, n = np.unique(index, return_counts=True)
    return {names.get(int(i), "oov"): int(c) for i, c in zip(values, n)}


def _journal(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def parse_models(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``--models`` entries as (row label, model name, hparam overrides). An entry is a model name,
    optionally with overrides in brackets for an ablation row beside the default one:
    ``sarnet,sarnet[attention=concat],hmdn_mmoe[refiner=explicit,explicit_mode=independent]``.
    A value is read as JSON where it parses (numbers, true/false) and as a string otherwise; a list-valued
    hparam goes in ``--hparams``."""
    entry_re = r"[\w.-]+(?:\[[^\[\]]*\])?"
    if not re.fullmatch(rf"\s*{entry_re}(?:\s*,\s*{entry_re})*\s*", text):
        raise ValueError(f"--models {text!r}: expected name or name[key=value,...] entries separated by commas")
    parsed = []
    for entry in re.findall(entry_re, text):
        name, _, rest = entry.partition("[")
        overrides: dict[str, Any] = {}
        for pair in filter(None, (p.strip() for p in rest.rstrip("]").split(","))):
            key, eq, value = pair.partition("=")
            if not eq:
                raise ValueError(f"--models entry {entry!r}: {pair!r} is not key=value")
            try:
                overrides[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key.strip()] = value.strip()
        parsed.append((entry, name.strip(), overrides))
    return parsed


def reusable_runs(journal: Sequence[Mapping[str, Any]],
                  rows: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, int], Mapping[str, Any]]:
    """The journal's runs of the table's ``rows`` (row label -> hparam overrides) that this version
    would train the same way, with the same overrides, by (row label, seed).

    Runs without the click-rate prior (an msrec before it, whose journal has no ``prior``) or
    without early stopping on the val split (no ``best_epoch``) are not comparable with today's
    training: they are trained again rather than mixed into the table.
    """
    return {(r["model"], r["seed"]): r for r in journal
            if r.get("prior") and "best_epoch" in r and r["model"] in rows
            and r.get("hparams", {}) == dict(rows[r["model"]])}


def _read(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def fit(name: str, seed: int, prep: Mapping[str, Any], hparams: Mapping[str, Any] | None = None,
        train_files: Sequence[str] | None = None, **budget: Any) -> tuple[Any, dict[str, Any]]:
    """Train ``name`` (``hparams`` over its defaults) on the prepared window's train split (or on
    ``train_files``, transformed examples of the same Transform) as the pipeline's Trainer does
    (``budget``: loop.train_model's batch_size, max_epochs, patience overrides); the model and
    the loop's statistics."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from msrec.models.registry import build_model
    from msrec.models.training import loop
    from msrec.models.training.trainer import dataset, example_parser, feature_spec, with_prior

    tf.keras.utils.set_random_seed(seed)
    tft_output = tft.TFTransformOutput(prep["transform_graph"])
    spec = feature_spec(prep["config"], tft_output, prep["scenarios"])
    split_transformed = prep.get("transformed", True)
    if train_files is None:
        train_files, train_transformed = [os.path.join(prep["examples"], "Split-train", "*")], split_transformed
    else:  # the fairness benchmark's own subsets, written transformed
        train_files, train_transformed = list(train_files), True
    hparams = with_prior(hparams or {}, train_files, tft_output, spec,
                         scenarios=None if train_transformed else prep["scenarios"])
    model = build_model(name, spec, hparams)
    use_fc = bool(getattr(model, "fc_sample_weight", False))
    batch_size = int(budget.pop("batch_size", loop.BATCH_SIZE))
    split_parse = example_parser(tft_output, split_transformed)
    train_parse = split_parse if train_transformed == split_transformed else example_parser(tft_output, True)
    train = dataset(train_files, train_parse, batch_size, use_fc, True, seed)
    val = dataset([os.path.join(prep["examples"], "Split-val", "*")], split_parse, batch_size, False, False)
    stats = loop.train_model(model, train, val, learning_rate=float(model.hparams["learning_rate"]),
                             batch_size=batch_size, **budget)
    return model, stats


def train_and_evaluate(name: str, seed: int, prep: dict[str, Any], hparams: Mapping[str, Any] | None = None,
                       row: str | None = None, **budget: Any) -> dict[str, Any]:
    """Train ``name`` (see :func:`fit`); its eval-day record, under the table's ``row`` label (default:
    the name)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from msrec.models.training.trainer import dataset, example_parser, feature_spec

    model, stats = fit(name, seed, prep, hparams, **budget)
    tft_output = tft.TFTransformOutput(prep["transform_graph"])
    spec = feature_spec(prep["config"], tft_output, prep["scenarios"])
    use_fc = bool(getattr(model, "fc_sample_weight", False))
    evaluation = dataset([os.path.join(prep["examples"], "Split-eval", "*")],
                         example_parser(tft_output, prep.get("transformed", True)), INFERENCE_BATCH, use_fc, False)
    predict = tf.function(lambda f: model({k: v for k, v in f.items() if k != "fairness_coef"}, training=False))
    preds, labels, scen, times = [], [], [], []
    for features, label, _ in evaluation:
        start = time.perf_counter()
        p = predict(features).numpy().reshape(-1)
        times.append((time.perf_counter() - start) * 1000 * INFERENCE_BATCH / len(p))
        preds.append(p)
        labels.append(label.numpy())
        scen.append(features[spec.scenario_feature].numpy().reshape(-1))
    p, y, s = np.concatenate(preds), np.concatenate(labels), np.concatenate(scen)
    eps = 1e-7
    names = {i + 1: sid for i, sid in enumerate(prep["scenarios"])}
    per = {names.get(int(i), "oov"): auc(p[s == i], y[s == i]) for i in np.unique(s)}
    # mean prediction / click rate per scenario: how well the model gets the scenarios' base rates,
    # which the overall AUC rewards and the per-scenario AUCs do not see
    calibration = {names.get(int(i), "oov"): float(p[s == i].mean() / max(y[s == i].mean(), eps)) for i in np.unique(s)}
    return {"model": row or name, "seed": seed, "hparams": dict(hparams or {}), "prior": bool(model.hparams["prior_ctr"]),
            "auc": auc(p, y),
            "per_scenario": per, "calibration": calibration,
            "logloss": float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))),
            "params": int(model.count_params()), "train_examples_per_s": stats["examples_per_s"],
            "epochs_run": stats["epochs_run"], "best_epoch": stats["best_epoch"], "best_val_auc": stats["best_val_auc"],
            # the first batch includes tracing, so the median is the steady state
            "infer_ms_per_2000": float(np.median(times[1:] or times))}


def scenario_auc(per_scenario: dict[str, float], counts: dict[str, int]) -> float:
    """Per-scenario AUC averaged with the eval day's sample counts as weights.

    A request ranks candidates within one scenario, so this is what serving sees; the overall AUC
    also rewards getting the click-rate differences *between* scenarios right, which no ranking uses."""
    known = {s: a for s, a in per_scenario.items() if s in counts and not np.isnan(a)}
    return float(sum(counts[s] * a for s, a in known.items()) / sum(counts[s] for s in known))


def summarise(runs: list[dict[str, Any]], models: Sequence[str], oracle: dict[str, Any],
              counts: dict[str, int]) -> dict[str, Any]:
    by_model = {m: [r for r in runs if r["model"] == m] for m in models}
    mean = {m: float(np.mean([r["auc"] for r in rs])) for m, rs in by_model.items()}
    scen = {m: [scenario_auc(r["per_scenario"], counts) for r in rs] for m, rs in by_model.items()}
    baselines = [m for m in models if m in BASELINES]  # plain baselines: an ablation row is no baseline
    best = max(baselines, key=lambda m: mean[m]) if baselines else None
    best_scen = max(baselines, key=lambda m: float(np.mean(scen[m]))) if baselines else None
    rows = {}
    for m, rs in by_model.items():
        rows[m] = {
            "scenario_auc_mean": float(np.mean(scen[m])), "scenario_auc_std": float(np.std(scen[m])),
            "relaimpr_scenario_auc_pct": (relaimpr(float(np.mean(scen[m])), float(np.mean(scen[best_scen])))
                                          if best_scen else None),
            "auc_mean": mean[m], "auc_std": float(np.std([r["auc"] for r in rs])),
            "logloss_mean": float(np.mean([r["logloss"] for r in rs])),
            "per_scenario": {s: float(np.nanmean([r["per_scenario"].get(s, np.nan) for r in rs]))
                             for s in sorted({s for r in rs for s in r["per_scenario"]})},
            "relaimpr_vs_best_baseline_pct": relaimpr(mean[m], mean[best]) if best else None,
            "params": rs[0]["params"], "train_examples_per_s": float(np.mean([r["train_examples_per_s"] for r in rs])),
            "infer_ms_per_2000": float(np.mean([r["infer_ms_per_2000"] for r in rs])),
        }
    return {"best_baseline": best, "best_baseline_scenario_auc": best_scen, "models": rows, "oracle": oracle}


def format_table(summary: dict[str, Any]) -> str:
    """One line per model (or ablation row): the summary metrics, then the per-scenario AUCs, each
    with the oracle's line first."""
    models = list(summary["models"])
    rows = summary["models"]
    oracle = summary["oracle"]
    width = max(12, max(len(m) for m in models) + 1)

    def num(value: Any, fmt: str, size: int) -> str:
        return format(float("nan") if value is None else value, fmt).rjust(size)

    columns = [("scen. AUC", "scenario_auc_mean", ".4f"), ("± std", "scenario_auc_std", ".4f"),
               ("RelaImpr %", "relaimpr_scenario_auc_pct", "+.2f"), ("overall AUC", "auc_mean", ".4f"),
               ("± std", "auc_std", ".4f"), ("RelaImpr %", "relaimpr_vs_best_baseline_pct", "+.2f"),
               ("logloss", "logloss_mean", ".4f"), ("params", "params", ",.0f"),
               ("train ex/s", "train_examples_per_s", ",.0f"), ("infer ms/2000", "infer_ms_per_2000", ".1f")]
    sizes = [max(10, len(title) + 1) for title, _, _ in columns]
    lines = [f"{'model':<{width}}" + "".join(f"{t:>{n}}" for (t, _, _), n in zip(columns, sizes))]
    oracle_row = {"auc_mean": oracle["overall"], "scenario_auc_mean": oracle["scenario_weighted"]}
    lines.append(f"{'oracle':<{width}}" + "".join(
        num(oracle_row[k], f, n) if k in oracle_row else " " * n for (_, k, f), n in zip(columns, sizes)))
    for m in models:
        lines.append(f"{m:<{width}}" + "".join(num(rows[m][k], f, n) for (_, k, f), n in zip(columns, sizes)))
    scenarios = sorted({s for r in rows.values() for s in r["per_scenario"]})
    lines += ["", "AUC per scenario (eval day, mean over seeds)",
              f"{'model':<{width}}" + "".join(f"{s:>7}" for s in scenarios)]
    lines.append(f"{'oracle':<{width}}" + "".join(num(oracle["per_scenario"].get(s), ".4f", 7) for s in scenarios))
    for m in models:
        lines.append(f"{m:<{width}}" + "".join(num(rows[m]["per_scenario"].get(s), ".4f", 7) for s in scenarios))
    lines.append("scen. AUC: per-scenario AUC weighted by eval samples (what ranking within a scenario sees); "
                 "overall AUC pools all scenarios")
    lines.append(f"RelaImpr is against the best baseline by the AUC before it: {summary['best_baseline_scenario_auc']} "
                 f"(scen. AUC), {summary['best_baseline']} (overall AUC)")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(summary["models"])
    # horizontal bars: ablation rows have long labels
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.5 + 0.28 * len(models)), sharey=True)
    colours = ["tab:orange" if m.partition("[")[0] in SEED_MODELS else "tab:blue" for m in models]
    ticks = list(range(len(models)))
    for ax, key, oracle, title in [(axes[0], "scenario_auc", summary["oracle"]["scenario_weighted"],
                                    "per-scenario AUC, weighted by samples"),
                                   (axes[1], "auc", summary["oracle"]["overall"], "overall AUC")]:
        ax.barh(ticks, [summary["models"][m][f"{key}_mean"] for m in models],
                xerr=[summary["models"][m][f"{key}_std"] for m in models], capsize=2, color=colours)
        if not math.isnan(oracle):  # your own logs have no true click probabilities
            ax.axvline(oracle, color="k", ls="--", label="oracle")
        ax.set_title(f"{title} (eval day; orange: seed models)", fontsize=9)
    axes[0].set_yticks(ticks, models, fontsize=8)
    axes[0].invert_yaxis()
    lowest = min(summary["models"][m][k] for m in models for k in ("scenario_auc_mean", "auc_mean"))
    highest = max(summary["models"][m][k] for m in models for k in ("scenario_auc_mean", "auc_mean"))
    top = summary["oracle"]["overall"] if not math.isnan(summary["oracle"]["overall"]) else highest
    for ax in axes:
        ax.set_xlim(max(0.5, lowest - 0.03), top + 0.01)
    if not math.isnan(summary["oracle"]["overall"]):
        axes[0].legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    from msrec.models.registry import merge_hparams, model_names
    from msrec.pipeline.commands import parse_hparams

    hparams = parse_hparams(args.hparams)
    try:  # before the window is prepared: an unknown model or hparam fails at once
        rows = parse_models(args.models or ",".join(m for m in SEED_MODELS + BASELINES if m in model_names()))
        row_hparams = {label: {**hparams, **overrides} for label, _, overrides in rows}
        for label, name, _ in rows:
            merge_hparams(name, row_hparams[label])
    except ValueError as e:
        print(f"msrec bench models: error: {e}", file=sys.stderr)
        return 2
    if not args.out:  # the CLI sent library output to DIR/logs/msrec.log when --out was given
        show_progress()
    out = args.out or tempfile.mkdtemp(prefix="msrec-bench-models-")
    split = {"eval_days": args.eval_days or 1, "val_days": args.val_days or 1}
    prep = prepare(out, args.days or 3, args.impressions_per_day or 400_000, args.logs, **split)
    counts = eval_counts(prep)
    if os.path.isdir(prep["truth"]):
        truth = load_truth(prep["truth"], prep["dates"][-1])
        per_scenario = oracle_auc(truth, by_scenario=True)
        oracle = {"overall": oracle_auc(truth), "per_scenario": per_scenario,
                  "scenario_weighted": scenario_auc(per_scenario, counts)}
    else:  # the user's own logs: no true click probabilities
        oracle = {"overall": math.nan, "per_scenario": {}, "scenario_weighted": math.nan}
    seeds = args.seeds or 3
    journal = os.path.join(out, RUNS_JOURNAL)
    earlier = _journal(journal)
    done = reusable_runs(earlier, row_hparams)
    stale = [r for r in earlier if r["model"] in row_hparams and (r["model"], r["seed"]) not in done]
    if stale:
        print(f"{len(stale)} runs of these rows in {journal} were trained by an older recipe (no click-rate prior "
              "or no early stopping) or with other --hparams: trained again", flush=True)
    runs: list[dict[str, Any]] = []
    for seed in range(seeds):
        for label, name, _ in rows:
            if (label, seed) in done:  # trained by an earlier, interrupted or narrower, run on this window
                runs.append(done[(label, seed)])
                continue
            print(f"training {label} (seed {seed})", flush=True)
            runs.append(train_and_evaluate(name, seed, prep, row_hparams[label], label))
            with open(journal, "a") as fh:
                fh.write(json.dumps(runs[-1]) + "\n")
    summary = summarise(runs, [label for label, _, _ in rows], oracle, counts)
    with open(os.path.join(out, "bench_models.json"), "w") as fh:
        json.dump({"machine": machine_info(), "fc_source": prep["fc_source"], "fc": prep["fc"], "runs": runs,
                   "summary": summary}, fh, indent=1)
    print(f"msrec bench models: window {prep['dates'][0]}..{prep['dates'][-1]} ({len(prep['dates'])} days, "
          f"eval and val days: {split}), FC from {prep['fc_source']}, "
          f"{seeds} seeds, the pipeline's training (early stopping on val AUC), hparams {hparams or 'defaults'}\n{format_machine(machine_info())}")
    print(format_table(summary))
    plot(summary, os.path.join(out, "bench_models.png"))
    print(f"results: {out}/bench_models.json, plot {out}/bench_models.png")
    return 0
