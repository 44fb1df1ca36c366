"""``pipelines/evaluate.py`` is a stage, not a library (issue 12): only the command-line dispatch reaches it.

What other modules need lives in its own home: running a model on an image in :mod:`models.inference`,
loading a run's model in :mod:`models.deblur_model`, score files in :mod:`pipelines.evaluation.score_files`, evaluating a
folder in :mod:`pipelines.evaluation.evaluator`. The source tree is scanned with :mod:`ast`, so an import inside a
function counts as well; :mod:`models.inference` must not import ``pipelines`` at all.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("pipelines", "models", "reports", "bench", "tests")
STAGE = "pipelines.evaluate"
ALLOWED = {"pipelines/cli.py"}  # the dispatch names the module as a string and imports it by that name


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` gives ``a`` and ``a.b``; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _sources():
    for folder in SOURCE_DIRS:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_only_the_cli_imports_the_evaluate_stage():
    offenders = [path.relative_to(REPO).as_posix() for path in _sources()
                 if path.relative_to(REPO).as_posix() not in ALLOWED
                 and any(m == STAGE or m.startswith(STAGE + ".") for m in imported_modules(path))]
    assert not offenders, f"{STAGE} is a stage, not a library; imported by: {', '.join(offenders)}"


def test_models_inference_does_not_import_pipelines():
    for name in ("inference.py", "fast_inference.py"):
        imports = imported_modules(REPO / "models" / name)
        assert not [m for m in imports if m.split(".")[0] == "pipelines"], (name, sorted(imports))


def test_the_scan_sees_every_form_of_import(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    folder = tmp_path / "pipelines"
    folder.mkdir()
    forms = ["import pipelines.evaluate", "from pipelines import evaluate", "from pipelines.evaluate import run",
             "def f():\n    from . import evaluate", "from .evaluate import run"]
    for i, source in enumerate(forms):
        (folder / f"m{i}.py").write_text(source + "\n")
        imports = imported_modules(folder / f"m{i}.py")
        assert STAGE in imports or any(m.startswith(STAGE + ".") for m in imports), source
    (folder / "ok.py").write_text("from pipelines import evaluation, scores\nimport pipelines.evaluation.evaluator\n")
    assert not [m for m in imported_modules(folder / "ok.py") if m == STAGE or m.startswith(STAGE + ".")]
