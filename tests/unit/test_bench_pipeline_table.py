"""``msrec bench pipeline``'s table: wall and CPU seconds per component, side by side per run."""
import math

from msrec.bench.pipeline import format_table


def test_each_component_shows_wall_and_cpu_and_a_training_only_row_leaves_them_blank() -> None:
    rows = [{"impressions": 200_000, "model": "sarnet", "wall_s": 100.0, "auc": 0.61, "error": None,
             "timings_s": {"Transform": 40.0, "Trainer": 30.5}, "cpu_s": {"Transform": 70.2, "Trainer": 55.0},
             "training": {"examples_per_s": 9000}},
            {"impressions": 200_000, "model": "mmoe", "wall_s": math.nan, "auc": 0.62, "error": None,
             "timings_s": {}, "cpu_s": {}, "training": {"examples_per_s": 12000}}]
    lines = format_table(rows).splitlines()
    transform = next(line for line in lines if line.startswith("Transform"))
    assert "40.0 / 70.2" in transform and transform.count("/") == 1
    assert lines[0].split()[-2:] == ["200k", "mmoe"]
