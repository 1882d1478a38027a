"""``msrec compile airflow``'s settings: what the DAG file stores (the required options and those
not at their defaults, paths absolute), and a bad start date refused before anything is written."""
import os
from typing import Any

import pytest

from msrec.cli import build_parser
from msrec.pipeline.airflow_runner import compile_command, dag_settings


def _args(*extra: str) -> Any:
    return build_parser().parse_args(["compile", "airflow", "--logs", "data/logs", "--workdir", "work",
                                      "--out", "dags/msrec_daily.py", *extra])


def test_the_dag_file_stores_the_required_options_and_the_changed_ones_with_absolute_paths() -> None:
    settings = dag_settings(_args("--start-date", "2026-11-01", "--max-epochs", "2", "--auc-floor", "0.55",
                                  "--feature-config", "fc.yaml"))
    assert settings == {"logs": os.path.abspath("data/logs"), "workdir": os.path.abspath("work"),
                        "start_date": "2026-11-01", "max_epochs": 2, "feature_config": os.path.abspath("fc.yaml")}


def test_a_bad_start_date_is_a_clear_error(tmp_path: Any) -> None:
    args = _args("--start-date", "2026-13-01")
    args.out = str(tmp_path / "dag.py")
    with pytest.raises(SystemExit, match="msrec: --start-date '2026-13-01' is not YYYY-MM-DD"):
        compile_command(args)
    assert not os.path.exists(args.out)


@pytest.mark.parametrize("scale", ["0", "-0.1", "1.5", "nan", "a tenth"])
def test_an_incremental_learning_rate_scale_outside_0_to_1_is_refused(scale: str, capsys: Any) -> None:
    with pytest.raises(SystemExit):
        _args("--incremental-lr-scale", scale)
    assert "--incremental-lr-scale" in capsys.readouterr().err
