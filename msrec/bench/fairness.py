"""``msrec bench fairness``: SAR-Net's debiasing measured on a generated window with intervention bias.

The window (``--days`` D, at least 4) is generated with the first world seed whose newest day is a
promotion day, so that the eval day holds forced impressions (promotion days alternate), and with
``--forced-click-lift`` L (default 0): the unlogged pull of how a promotion is shown adds L to the
click logit of forced impressions, so that their labels, not only their exposure, carry the
intervention (``msrec.data.clicks``); the same L gives the same window. It runs
through the pipeline up to Transform once (ingestion, FairnessGen bootstrapping with FC = 1,
Transform): the newest day is the eval split, the day before it val, the rest train.

1. FC model. SAR-Net trained on day 1 with the pipeline's loop (epoch selected on the val split),
   as the first day's model of the pipeline would be.
2. FC. That model predicts every impression of the later train days (2..D-2); each (day, scenario,
   item)'s Fairness Coefficient is computed from those predictions with the pipeline's FC code
   (SAR-Net eq. 1 with shrinkage of rare items, ``components/fairness_gen/fairness.py``) and written
   into the examples the variants train on, so FC never comes from the bootstrap.
3. Variants, each trained ``--seeds`` times on days 2..D-2 with the pipeline's loop
   (msrec.bench.models.fit): ``sarnet_fc`` SAR-Net with FC as sample weight and the bias nets;
   ``sarnet_no_fc`` the same model with FC = 1 and the bias nets off (the paper's Table 5 ablation);
   ``downsample`` the no-FC model trained on the same days with each forced impression (truth
   ``forced``) kept with probability ``--downsample-keep`` (the paper's baseline).
4. AUC on the eval day: on all impressions, and on the organic ones (truth ``forced`` = 0). Every
   split is transformed here from FairnessGen's output with the window's Transform graph, so that
   each example keeps its impression_id and with it its truth; models score without FC (the bias
   nets are training-only).
5. Exposure (SAR-Net Fig. 3-4): a request is one page view of the eval day (the day after the
   training days): its candidates are the items its slate logged (forced ones included), ranked by
   the variant; the top ``--top-k`` are shown. An *intervened item* is an (item_id, scenario_id)
   pair that ``truth/interventions.jsonl`` records as forced into that scenario on a day of the
   window. ``topk_intervened_share`` is the share of shown slots, over the requests with more than
   K candidates (only there does the ranking choose), held by intervened items. For reference: the
   share among those requests' candidates and in their logged first K positions.

Writes ``DIR/fairness.json`` and ``DIR/fairness.png`` and prints the table with the machine. It
resumes: a window already prepared in DIR with the same shape is reused, and so are the runs in
``DIR/fairness_runs.jsonl`` trained with the same settings.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
from typing import Any, Iterator, Mapping, Sequence

import msrec  # noqa: F401
import numpy as np
import pandas as pd

from msrec.bench.machine import format_machine, machine_info
from msrec.bench.models import fit, transformed_window
from msrec.components.fairness_gen.fairness import Exposure, fairness_coefficients
from msrec.data.generator import GenerateError, generate, promotion_days
from msrec.auc import auc
from msrec.data.truth import load_interventions, load_truth
from msrec.pipeline import daily
from msrec.progress import show_progress
from msrec.schemas.feature_config import load_feature_config

MODEL = "sarnet"
NO_FC = {"use_fc_weighting": False, "use_bias_net": False}
VARIANTS: dict[str, Mapping[str, Any]] = {"sarnet_fc": {}, "sarnet_no_fc": NO_FC, "downsample": NO_FC}
RESULTS = "fairness.json"
PREPARED = "prepared.json"
TRAIN_SUMMARY = "train.json"
RUNS_JOURNAL = "fairness_runs.jsonl"
PLOT = "fairness.png"
MIN_DAYS = 4  # the FC model's day, a train day, the val day, the eval day
INFERENCE_BATCH = 2000
DOWNSAMPLE_SEED = 0  # which forced impressions the downsample variant drops: the same for every seed
FC_MODEL_SEED = 0
_KEYS = ("impression_id", "date", "scenario_id", "item_id")


class FairnessBenchError(ValueError):
    """The bench's arguments or window are unusable; the message says why."""


def data_seed(days: int) -> int:
    """The first generator seed whose newest day is a promotion day."""
    return next(s for s in range(1000) if promotion_days(s, days)[-1])


def prepare(out_dir: str, days: int, per_day: int, forced_click_lift: float = 0.0) -> dict[str, Any]:
    """Generate the window and run it through the pipeline up to Transform; the prepared window
    (the one ``out_dir`` holds already when it has the same shape and lift)."""
    marker = os.path.join(out_dir, PREPARED)
    earlier = _read(marker)
    shape = {"days": days, "impressions_per_day": per_day, "forced_click_lift": forced_click_lift}
    if earlier and earlier["shape"] == shape:
        return {**earlier["prep"], "config": load_feature_config(os.path.join(earlier["prep"]["logs"],
                                                                              "feature_config.yaml"))}
    data_dir, workdir = os.path.join(out_dir, "data"), os.path.join(out_dir, "work")
    seed = data_seed(days)
    try:
        data = generate(data_dir, days=days, impressions_per_day=per_day, seed=seed, progress=False,
                        forced_click_lift=forced_click_lift)
    except GenerateError as e:
        raise FairnessBenchError(str(e)) from None
    logs, dates = str(data.logs_dir), data.dates
    rep = daily.run_day(logs, dates[-1], workdir, model=MODEL, window=days, stop_after="transform")
    if rep.get("error"):
        raise FairnessBenchError(f"the pipeline run that prepares {dates[0]}..{dates[-1]} failed: {rep['error']}")
    prep = transformed_window(logs, str(data.truth_dir), workdir, MODEL)
    prep.update(data_seed=seed, fc_model_date=dates[0], window=dates, train_dates=dates[1:-2],
                val_date=dates[-2], eval_date=dates[-1],
                raw_examples=_newest(os.path.join(workdir, "pipeline", MODEL, "FairnessGen", "weighted_examples")))
    _dump(marker, {"shape": shape,
                   "prep": {k: v for k, v in prep.items() if k != "config"}})
    return prep


def _read(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def _dump(path: str, value: Any) -> None:
    with open(path, "w") as fh:
        json.dump(value, fh, indent=1)


def _newest(folder: str) -> str:
    runs = sorted(os.listdir(folder), key=int)
    if not runs:
        raise FairnessBenchError(f"no FairnessGen output under {folder}")
    return os.path.join(folder, runs[-1])


def raw_batches(prep: Mapping[str, Any], split: str) -> Iterator[tuple[dict[str, np.ndarray], pd.DataFrame]]:
    """FairnessGen's examples of ``split`` transformed here with the window's Transform graph, in
    batches: (transformed features, their impression_id, date, scenario_id and item_id)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    tft_output = tft.TFTransformOutput(prep["transform_graph"])
    raw_spec = tft_output.raw_feature_spec()
    key_spec = {k: tf.io.FixedLenFeature([], tf.string, default_value="") for k in _KEYS}
    layer = tft_output.transform_features_layer()
    files = sorted(glob.glob(os.path.join(prep["raw_examples"], f"Split-{split}", "*")))
    if not files:
        raise FairnessBenchError(f"no {split} examples under {prep['raw_examples']}")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(INFERENCE_BATCH)
    for raw, keys in ds.map(lambda b: (tf.io.parse_example(b, raw_spec), tf.io.parse_example(b, key_spec))):
        transformed = layer(raw)
        yield ({k: v.numpy() for k, v in transformed.items()},
               pd.DataFrame({k: [x.decode("utf-8") for x in v.numpy()] for k, v in keys.items()}))


def _predict(model: Any) -> Any:
    """The model's click probabilities for a batch of transformed features, scored without FC."""
    import tensorflow as tf

    from msrec.components.log_example_gen.examples import DATE_FEATURE
    from msrec.schemas.feature_config import FAIRNESS_COEF, LABEL

    predict = tf.function(lambda f: model(f, training=False))

    def run(features: Mapping[str, np.ndarray]) -> np.ndarray:
        inputs = {k: tf.constant(v) for k, v in features.items() if k not in (LABEL, DATE_FEATURE, FAIRNESS_COEF)}
        return predict(inputs).numpy().reshape(-1)
    return run


def _example(features: Mapping[str, np.ndarray], row: int, spec: Mapping[str, Any]) -> bytes:
    """Row ``row`` of a batch of transformed features as a serialized tf.Example (Transform's format)."""
    import tensorflow as tf

    feature = {}
    for name in spec:
        v = np.asarray(features[name][row]).reshape(-1)
        if v.dtype.kind in "iub":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=v.astype(np.int64)))
        elif v.dtype.kind == "f":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=v.astype(np.float32)))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path: str, batches: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray]], spec: Mapping[str, Any]) -> int:
    """Write the selected rows of each (features, rows) batch as gzipped transformed examples."""
    import tensorflow as tf

    n = 0
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for features, rows in batches:
            for j in rows:
                writer.write(_example(features, int(j), spec))
                n += 1
    return n


def fc_of(keys: pd.DataFrame, p: np.ndarray) -> np.ndarray:
    """Each impression's FC from the FC model's predictions ``p``: SAR-Net eq. 1 with shrinkage per
    (date, scenario), as FairnessGen computes it."""
    frame = keys.assign(p=p)
    sums = frame.groupby(["date", "scenario_id", "item_id"])["p"].agg(["size", "sum"])
    table = {}
    for (date, scenario), items in sums.groupby(level=[0, 1]):
        exposures = {item: Exposure(int(n), float(f)) for (_, _, item), (n, f) in items.iterrows()}
        for item, fc in fairness_coefficients(exposures).items():
            table[(date, scenario, item)] = fc
    return np.array([table[k] for k in zip(frame["date"], frame["scenario_id"], frame["item_id"])])


def train_files(prep: Mapping[str, Any], keep: float, out_dir: str, **budget: Any) -> dict[str, Any]:
    """The FC model (day 1), then days 2..D-2 written twice as transformed examples for the variants:
    with the FC model's FC, and with each forced impression kept with probability ``keep``; their
    counts and FC by forced and organic impressions (those ``out_dir`` holds already when they were
    made with the same ``keep`` and ``budget``)."""
    import tensorflow_transform as tft

    from msrec.schemas.feature_config import FAIRNESS_COEF

    summary = os.path.join(out_dir, TRAIN_SUMMARY)
    earlier = _read(summary)
    if earlier and earlier["keep"] == keep and earlier["budget"] == dict(budget):  # the same FC model's files
        return earlier
    spec = tft.TFTransformOutput(prep["transform_graph"]).transformed_feature_spec()
    # one folder per file set: the pipeline's dataset reader takes folders (or glob patterns)
    folders = {name: os.path.join(out_dir, name) for name in ("fc_model", "fc", "downsample")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    paths = {name: os.path.join(folder, "part-0.gz") for name, folder in folders.items()}
    batches = list(raw_batches(prep, "train"))
    first = [(f, np.flatnonzero(k["date"].to_numpy() == prep["fc_model_date"])) for f, k in batches]
    if not _write(paths["fc_model"], first, spec):
        raise FairnessBenchError(f"no train examples of {prep['fc_model_date']} for the FC model")
    print(f"training the FC model on {prep['fc_model_date']}", flush=True)
    fc_model, _ = fit(MODEL, FC_MODEL_SEED, prep, train_files=[folders["fc_model"]], **dict(budget))
    predict = _predict(fc_model)
    later = [(f, k, np.flatnonzero(k["date"].to_numpy() != prep["fc_model_date"])) for f, k in batches]
    keys = pd.concat([k.iloc[rows] for _, k, rows in later], ignore_index=True)
    fc = fc_of(keys, np.concatenate([predict(f)[rows] for f, _, rows in later]))
    forced_of = pd.concat([load_truth(prep["truth"], d) for d in prep["train_dates"]]).set_index("impression_id")
    forced = forced_of["forced"].reindex(keys["impression_id"]).fillna(0).to_numpy().astype(bool)
    kept = ~forced | (np.random.default_rng(DOWNSAMPLE_SEED).random(len(forced)) < keep)
    start = 0
    with_fc, down = [], []
    for f, _, rows in later:
        f = dict(f)
        f[FAIRNESS_COEF] = f[FAIRNESS_COEF].astype(np.float32).copy()
        f[FAIRNESS_COEF].reshape(-1)[rows] = fc[start:start + len(rows)]
        with_fc.append((f, rows))
        down.append((f, rows[kept[start:start + len(rows)]]))
        start += len(rows)
    n_all, n_down = _write(paths["fc"], with_fc, spec), _write(paths["downsample"], down, spec)
    result = {"keep": keep, "budget": dict(budget),
              "files": {"fc": [folders["fc"]], "downsample": [folders["downsample"]]},
              "train_impressions": {"all": n_all, "downsampled": n_down},
              "train_forced_impressions": {"all": int(forced.sum()), "downsampled": int((forced & kept).sum())},
              "fc": {"mean_forced": float(fc[forced].mean()) if forced.any() else float("nan"),
                     "mean_organic": float(fc[~forced].mean()),
                     "share_not_1": float(np.mean(np.abs(fc - 1.0) > 1e-6)),
                     "min": float(fc.min()), "max": float(fc.max())}}
    _dump(summary, result)
    return result


def eval_frame(prep: Mapping[str, Any]) -> pd.DataFrame:
    """The eval day's impressions by impression_id: truth (click, forced, scenario, item), the request
    (page view) of each, its logged position, and whether its (item, scenario) pair is intervened
    (module docstring)."""
    frames = [pd.read_json(f, lines=True, dtype={"impression_id": str, "session_id": str, "scenario_id": str})
              for f in sorted(glob.glob(os.path.join(prep["logs"], prep["eval_date"], "impressions-*.jsonl*")))]
    logged = pd.concat(frames)[["impression_id", "session_id", "scenario_id", "ts", "position"]]
    logged["request"] = logged.groupby(["session_id", "scenario_id", "ts"]).ngroup()
    truth = load_truth(prep["truth"], prep["eval_date"]).set_index("impression_id")
    frame = truth.join(logged.set_index("impression_id")[["request", "position"]], how="inner")
    window = set(prep["window"])
    pairs = {(item, scen) for date, item, scen in load_interventions(prep["truth"]) if date in window}
    frame["intervened"] = [(i, s) in pairs for i, s in zip(frame["item_id"], frame["scenario_id"])]
    return frame


def score(model: Any, batches: Sequence[tuple[Mapping[str, np.ndarray], pd.DataFrame]]) -> pd.Series:
    """The model's prediction for every example of ``batches`` (from raw_batches), by impression_id."""
    predict = _predict(model)
    return pd.Series(np.concatenate([predict(f) for f, _ in batches]),
                     index=np.concatenate([k["impression_id"].to_numpy() for _, k in batches]))


def requests_over(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The impressions of the requests with more than ``k`` candidates."""
    size = frame.groupby("request")["request"].transform("size")
    return frame[size > k]


def topk_share(frame: pd.DataFrame, scores: pd.Series | None, k: int) -> float:
    """Share of intervened items among the top ``k`` of every request with more than ``k``
    candidates, ranked by ``scores`` (None: by the logged position)."""
    ranked = requests_over(frame, k).copy()
    if ranked.empty:
        raise FairnessBenchError(f"no eval request has more than {k} candidates: choose a smaller --top-k")
    ranked["key"] = -ranked["position"] if scores is None else scores.reindex(ranked.index).to_numpy()
    # best first; a tie goes to the earlier logged position
    ranked = ranked.sort_values(["request", "key", "position"], ascending=[True, False, True])
    top = ranked.groupby("request").head(k)
    return float(top["intervened"].mean())


def train_variant(prep: Mapping[str, Any], train: Mapping[str, Any], frame: pd.DataFrame,
                  evaluation: Sequence[tuple[Mapping[str, np.ndarray], pd.DataFrame]], variant: str, seed: int,
                  top_k: int, out_dir: str, **budget: Any) -> dict[str, Any]:
    """Train one variant with one seed and measure it on the eval day; a run already in
    ``out_dir``'s journal with the same settings is taken from there instead."""
    journal = os.path.join(out_dir, RUNS_JOURNAL)
    key = {"variant": variant, "seed": seed, "top_k": top_k, "keep": train["keep"], "budget": dict(budget)}
    if os.path.exists(journal):
        with open(journal) as fh:
            for line in fh:
                done = json.loads(line)
                if {k: done.get(k) for k in key} == key:
                    return done
    print(f"training {variant} (seed {seed})", flush=True)
    files = train["files"]["downsample" if variant == "downsample" else "fc"]
    model, stats = fit(MODEL, seed, prep, VARIANTS[variant], train_files=files, **dict(budget))
    p = score(model, evaluation).reindex(frame.index).to_numpy()
    y = frame["click"].to_numpy()
    organic = (frame["forced"] == 0).to_numpy()
    row = {**key, "organic_auc": auc(p[organic], y[organic]), "all_auc": auc(p, y),
           "topk_intervened_share": topk_share(frame, pd.Series(p, index=frame.index), top_k),
           "epochs_run": stats["epochs_run"], "best_epoch": stats["best_epoch"], "best_val_auc": stats["best_val_auc"]}
    with open(journal, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def run(out_dir: str, days: int = 4, per_day: int = 60_000, seeds: int = 3, top_k: int = 3,
        downsample_keep: float = 0.2, forced_click_lift: float = 0.0, **budget: Any) -> dict[str, Any]:
    """The whole bench (module docstring); the results written to ``out_dir/fairness.json``
    (``budget``: the training loop's batch_size, max_epochs, patience overrides, for every model)."""
    if days < MIN_DAYS:
        raise FairnessBenchError(f"--days must be at least {MIN_DAYS} (the FC model's day, a train day, "
                                 f"the val day and the eval day), got {days}")
    if seeds < 1 or top_k < 1 or not 0.0 <= downsample_keep < 1.0:
        raise FairnessBenchError(f"--seeds and --top-k must be at least 1 and --downsample-keep in [0, 1), got "
                                 f"{seeds}, {top_k}, {downsample_keep}")
    prep = prepare(out_dir, days, per_day, forced_click_lift)
    train = train_files(prep, downsample_keep, os.path.join(out_dir, "train"), **budget)
    frame = eval_frame(prep)
    evaluation = list(raw_batches(prep, "eval"))
    results: dict[str, dict[str, list[float]]] = {key: {v: [] for v in VARIANTS}
                                                 for key in ("organic_auc", "all_auc", "topk_intervened_share")}
    runs = []
    for seed in range(seeds):
        for variant in VARIANTS:
            runs.append(train_variant(prep, train, frame, evaluation, variant, seed, top_k, out_dir, **budget))
            for key in results:
                results[key][variant].append(runs[-1][key])
    organic = (frame["forced"] == 0).to_numpy()
    shown = requests_over(frame, top_k)
    downsampled = {v: "downsampled" if v == "downsample" else "all" for v in VARIANTS}
    out = {
        **results,
        "topk_reference": {"logged_first_k": topk_share(frame, None, top_k),
                           "candidates": float(shown["intervened"].mean())},
        "train_impressions": {v: train["train_impressions"][d] for v, d in downsampled.items()},
        "train_forced_impressions": {v: train["train_forced_impressions"][d] for v, d in downsampled.items()},
        "fc_train": train["fc"],
        "eval": {"impressions": len(frame), "forced": int((~organic).sum()),
                 "requests": int(frame["request"].nunique()), "requests_over_k": int(shown["request"].nunique())},
        "settings": {"days": days, "impressions_per_day": per_day, "seeds": seeds, "top_k": top_k,
                     "downsample_keep": downsample_keep, "forced_click_lift": forced_click_lift,
                     "data_seed": prep["data_seed"],
                     "fc_model_date": prep["fc_model_date"], "train_dates": prep["train_dates"],
                     "val_date": prep["val_date"], "eval_date": prep["eval_date"], "budget": dict(budget),
                     "variants": {v: dict(h) for v, h in VARIANTS.items()}},
        "runs": runs,
        "machine": machine_info(),
    }
    with open(os.path.join(out_dir, RESULTS), "w") as fh:
        json.dump(out, fh, indent=1)
    plot(out, os.path.join(out_dir, PLOT))
    return out


def _mean_std(values: Sequence[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def format_table(res: Mapping[str, Any]) -> str:
    s = res["settings"]
    lines = [f"forced click lift {s['forced_click_lift']:g} (logit added to forced impressions' clicks, not logged)",
             f"{'variant':<14}{'organic AUC':>18}{'all AUC':>18}{'top-' + str(s['top_k']) + ' intervened':>20}"
             f"{'train forced':>14}"]
    for v in VARIANTS:
        lines.append(f"{v:<14}{_mean_std(res['organic_auc'][v]):>18}{_mean_std(res['all_auc'][v]):>18}"
                     f"{_mean_std(res['topk_intervened_share'][v]):>20}"
                     f"{res['train_forced_impressions'][v]:>8} of {res['train_impressions'][v]}")
    ref, fc, ev = res["topk_reference"], res["fc_train"], res["eval"]
    lines.append(f"mean ± std over {s['seeds']} seeds; eval day {s['eval_date']}: {ev['impressions']} impressions, "
                 f"{ev['forced']} forced; top-{s['top_k']} over {ev['requests_over_k']} of {ev['requests']} requests "
                 f"(those with more than {s['top_k']} candidates)")
    lines.append(f"intervened share among those candidates {ref['candidates']:.4f}, "
                 f"in their logged first {s['top_k']} {ref['logged_first_k']:.4f}")
    lines.append(f"FC (SAR-Net trained on {s['fc_model_date']}) on the train days: mean {fc['mean_forced']:.3f} on forced, "
                 f"{fc['mean_organic']:.3f} on organic impressions, {fc['share_not_1']:.1%} not 1, "
                 f"range {fc['min']:.3f}..{fc['max']:.3f}")
    return "\n".join(lines)


def plot(res: Mapping[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(VARIANTS)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, title in [(axes[0], "organic_auc", "AUC on organic eval impressions"),
                           (axes[1], "topk_intervened_share",
                            f"intervened share of the top {res['settings']['top_k']}")]:
        values = [res[key][v] for v in variants]
        ax.bar(variants, [np.mean(x) for x in values], yerr=[np.std(x) for x in values], capsize=4,
               color=["tab:orange", "tab:blue", "tab:green"], alpha=0.7)
        for i, x in enumerate(values):  # every seed, so the spread is visible as well as its std
            ax.plot([i] * len(x), x, "k.", ms=5)
        ax.set_title(f"{title} (mean ± std, dots: seeds)", fontsize=9)
    lo = min(min(x) for x in res["organic_auc"].values())
    hi = max(max(x) for x in res["organic_auc"].values())
    axes[0].set_ylim(lo - 0.01, hi + 0.01)
    axes[1].axhline(res["topk_reference"]["logged_first_k"], color="k", ls="--", lw=1, label="logged first K")
    axes[1].axhline(res["topk_reference"]["candidates"], color="grey", ls=":", lw=1, label="all candidates")
    axes[1].legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    out = args.out or tempfile.mkdtemp(prefix="msrec-bench-fairness-")
    if not args.out:  # the CLI sent library output to DIR/logs/msrec.log when --out was given
        show_progress()
    try:
        res = run(out, days=args.days or 4, per_day=args.impressions_per_day or 60_000, seeds=args.seeds or 3,
                  top_k=args.top_k, downsample_keep=args.downsample_keep, forced_click_lift=args.forced_click_lift)
    except FairnessBenchError as e:
        print(f"msrec bench fairness: error: {e}", file=sys.stderr)
        return 2
    s = res["settings"]
    print(f"msrec bench fairness: FC model trained on {s['fc_model_date']}, train {','.join(s['train_dates'])}, "
          f"val {s['val_date']}, eval {s['eval_date']} ({s['impressions_per_day']} impressions a day)\n"
          f"{format_machine(res['machine'])}")
    print(format_table(res))
    print(f"results: {out}/{RESULTS}, plot {out}/{PLOT}")
    return 0
