"""msrec serve on models the pipeline pushed (conftest's 2-day SAR-Net backfill), queried through the
official TF Serving stubs with candidates assembled from the logs: answers equal the SavedModel
called in process, a swap to the next day's model fails no request, a corrupt version leaves the
served one in place, and bad requests get the right status codes."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import datetime as dt
import glob
import os

import grpc
import numpy as np
import pytest

from msrec.demo import pick_user
from msrec.serving.candidates import build_candidates
from msrec.serving.client import PredictClient, ServingClientError, as_columns, coerce_inputs
from msrec.serving.server import start_server
from msrec.signatures import raw_input_specs
from support.serving import (check_corrupt_version_leaves_the_old_one, check_swap_fails_no_request, feature_config,
                              in_process_ctr)

MODEL = "sarnet"
MAX_CANDIDATES = 16


@pytest.fixture(scope="module")
def pipeline_models(e2e_backfill):
    """The version day 1 pushed, and the model the day-2 Trainer exported (pushed or not)."""
    workdir, reports = e2e_backfill
    assert reports[0]["pushed_version"] is not None, reports[0]["blessing_reason"]
    pushed = os.path.join(workdir, "serving", MODEL, str(reports[0]["pushed_version"]))
    exports = glob.glob(os.path.join(workdir, "pipeline", MODEL, "Trainer", "model", "*", "Format-Serving"))
    latest = max(exports, key=lambda p: int(p.split(os.sep)[-2]))
    return {"workdir": workdir, "a": pushed, "b": latest}


@pytest.fixture(scope="module")
def candidates(e2e_data):
    """Raw serving features for a logged user's items in two scenarios, from the logs."""
    date = e2e_data.dates[-1]
    user, scenarios, items = pick_user(str(e2e_data.logs_dir), date, n_items=8)
    end_of_day = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp() * 1000) + 86_400_000
    specs = raw_input_specs(feature_config())
    out = {}
    for scenario in scenarios:
        rows = build_candidates(str(e2e_data.logs_dir), user, scenario, items, now_ms=end_of_day).rows
        out[scenario] = coerce_inputs(as_columns(rows), specs)[0]
    return out


@pytest.fixture(scope="module")
def served(pipeline_models):
    base = os.path.dirname(pipeline_models["a"])
    handle = start_server(model_name=MODEL, model_base_path=base, poll_seconds=0, max_candidates=MAX_CANDIDATES)
    client = PredictClient(handle.target)
    yield client
    client.close()
    handle.stop()


def test_ctrs_over_grpc_equal_the_pushed_saved_model_in_process(served, pipeline_models, candidates):
    rankings = []
    for inputs in candidates.values():
        outputs, version = served.predict_with_version(MODEL, inputs)
        assert outputs["ctr"].shape == (len(inputs["item_id"]),)
        # the newest version the backfill pushed (day 2's too when it was blessed)
        answered = os.path.join(os.path.dirname(pipeline_models["a"]), str(version))
        np.testing.assert_allclose(outputs["ctr"], in_process_ctr(answered, inputs), rtol=1e-5, atol=1e-7)
        rankings.append(np.argsort(-outputs["ctr"]).tolist())
        assert np.all((outputs["ctr"] > 0) & (outputs["ctr"] < 1)) and outputs["ctr"].std() > 0
    first, second = candidates.values()
    assert not np.allclose(served.predict(MODEL, first)["ctr"], served.predict(MODEL, second)["ctr"])


def test_swap_to_the_next_days_model_fails_no_request(pipeline_models, candidates, tmp_path):
    inputs = next(iter(candidates.values()))
    check_swap_fails_no_request(tmp_path / MODEL, MODEL, pipeline_models["a"], pipeline_models["b"], inputs)


def test_a_corrupt_version_leaves_the_pipeline_model_serving(pipeline_models, candidates, tmp_path):
    inputs = next(iter(candidates.values()))
    check_corrupt_version_leaves_the_old_one(tmp_path / MODEL, MODEL, pipeline_models["a"], pipeline_models["b"],
                                             inputs)


def _error(call) -> ServingClientError:
    with pytest.raises(ServingClientError) as info:
        call()
    return info.value


def test_bad_requests_get_clear_status_codes(served, candidates):
    inputs = dict(next(iter(candidates.values())))
    missing = {k: v for k, v in inputs.items() if k != "user_id"}
    error = _error(lambda: served.predict(MODEL, missing))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "missing input(s) ['user_id']" in error.details
    wrong = {**inputs, "position": np.array([str(x).encode() for x in inputs["position"]], dtype=object)}
    error = _error(lambda: served.predict(MODEL, wrong))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "'position' has dtype DT_STRING" in error.details
    too_many = {k: np.concatenate([v] * 3) for k, v in inputs.items()}  # 24 > 16 candidates
    error = _error(lambda: served.predict(MODEL, too_many))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and f"at most {MAX_CANDIDATES}" in error.details
    error = _error(lambda: served.predict("mmoe", inputs))
    assert error.code == grpc.StatusCode.NOT_FOUND and "served models: ['sarnet']" in error.details
