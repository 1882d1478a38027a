"""The card's layout: top-level folders mapped into the one ``msrec`` package, and imported only
through it (a bare ``import models`` would work from the checkout and break in an installed wheel)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAPPED = ("pipeline", "components", "models", "schemas")
SOURCES = ("msrec", *MAPPED, "tests", "benchmarks")


def _imported_names(path: Path) -> list[tuple[int, str]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
    return names


def test_the_card_folders_are_at_the_top_level() -> None:
    for folder in (*MAPPED, "tests", "deploy"):
        assert (REPO / folder).is_dir(), folder
    assert (REPO / "setup.py").is_file()


def test_nothing_imports_a_mapped_folder_by_its_bare_name() -> None:
    offenders = [f"{path.relative_to(REPO)}:{line}: import {name}"
                 for top in SOURCES for path in sorted((REPO / top).rglob("*.py"))
                 for line, name in _imported_names(path) if name.split(".")[0] in MAPPED]
    assert offenders == [], "import these through msrec.<folder>:\n" + "\n".join(offenders)


def test_no_module_imports_a_later_pipeline_stage() -> None:
    """Ingestion knows nothing of training, training nothing of the pipeline assembly or serving."""
    # stages in order: ingestion, FC, transform + training, evaluation + blessing, push, serving;
    # the pipeline assembly sits above them all
    later = {"components/log_example_gen": ("msrec.components.fairness_gen", "msrec.models",
                                            "msrec.components.scenario_blessing", "msrec.components.atomic_pusher",
                                            "msrec.pipeline", "msrec.serving"),
             "components/fairness_gen": ("msrec.models.training", "msrec.components.scenario_blessing",
                                         "msrec.components.atomic_pusher", "msrec.pipeline", "msrec.serving"),
             "models": ("msrec.components.scenario_blessing", "msrec.components.atomic_pusher", "msrec.pipeline",
                        "msrec.serving"),
             "components/scenario_blessing": ("msrec.components.atomic_pusher", "msrec.pipeline", "msrec.serving"),
             "schemas": ("msrec.models", "msrec.pipeline", "msrec.serving")}
    offenders = [f"{path.relative_to(REPO)}:{line}: import {name}"
                 for folder, banned in later.items() for path in sorted((REPO / folder).rglob("*.py"))
                 for line, name in _imported_names(path) if name.startswith(banned)]
    assert offenders == [], "\n".join(offenders)
