"""Session fixtures shared by test modules: the end-to-end 2-day backfill costs minutes, so it runs
once for the pipeline tests and for the serving tests that query the models it pushed."""
from __future__ import annotations

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import random
import sys

import numpy as np
import pytest

from msrec.data.generator import generate
from msrec.pipeline import daily
from support.e2e import E2E_PER_DAY, E2E_RUN, E2E_SEED


@pytest.fixture(autouse=True)
def _same_random_state_for_every_test() -> None:
    """Every test starts from seed 0 (Python, numpy and, where a test module imported it, TensorFlow):
    an untrained model's weights, and so a test's outcome, do not depend on which tests ran before it
    in the same xdist worker."""
    random.seed(0)
    np.random.seed(0)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def e2e_data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("logs") / "data", days=2, impressions_per_day=E2E_PER_DAY, seed=E2E_SEED,
                    progress=False)


@pytest.fixture(scope="session")
def e2e_backfill(e2e_data, tmp_path_factory):
    """(workdir, reports) of a backfill over both generated days."""
    workdir = str(tmp_path_factory.mktemp("work"))
    reports = daily.backfill(str(e2e_data.logs_dir), e2e_data.dates[0], e2e_data.dates[-1], workdir, **E2E_RUN)
    return workdir, reports


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (scripts/test.sh runs one worker per core), the tests that share the backfill
    go to one worker together (``--dist loadgroup``), so it is computed once."""
    for item in items:
        if {"e2e_backfill", "e2e_data"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("e2e_backfill"))
