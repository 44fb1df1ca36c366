"""The architecture holds (issue 25): the folder tree says what depends on what.

Every module of ``pipelines``, ``models`` and ``reports`` is parsed with :mod:`ast`; every import counts, at
the top of a module or inside a function. From that graph between project modules:

* nothing in ``models/`` imports ``pipelines/`` (the networks stand on their own);
* no import circle between project modules;
* only the command-line dispatch (``pipelines/cli.py``) imports a command module, and no library module is
  named like a command (``pipelines/evaluate.py`` the command, ``pipelines/evaluation/`` the library);
* no module in ``pipelines/`` or ``models/`` is over :data:`MAX_LINES` lines;
* the root of ``pipelines/`` holds the commands (:data:`COMMANDS`), the dispatch, package folders and the
  checksums table, nothing else; the ``__init__.py`` of a ``pipelines`` package holds only its docstring (it
  runs on every import of the package, and dvc.yaml does not declare it: ``tests/test_dependencies.py``).

Each rule is a function of the graph or the tree, and a test below feeds it a small fake one that breaks it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "models", "reports")
MAX_LINES = 600
# The stage commands at the root of pipelines/: one module per `blurdm-bench` subcommand (cli.SUBCOMMANDS)
COMMANDS = ("check", "deblur", "evaluate", "fetch", "gpu_check", "import_weights", "migrate_lock", "params", "profile", "realcrops", "rehearse", "study",
            "synth", "tables", "train", "ui")
ROOT_FILES = ("__init__.py", "cli.py", "checksums.yaml")  # the dispatch, and the archives' sha256 table
ROOT_DATA_FOLDERS = ("conf",)  # the Hydra config tree params.yaml is composed from (pipelines/core/composition.py)


# ------------------------------------------------------------------------------------------------ the graph

def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = REPO) -> dict[str, Path]:
    """Dotted name -> file of every module of the project packages."""
    return {module_name(path, root): path for package in PACKAGES if (root / package).is_dir()
            for path in sorted((root / package).rglob("*.py"))}


def imported(path: Path, name: str, modules: set[str]) -> set[str]:
    """The project modules ``path`` (module ``name``) imports, anywhere in it: ``from a import b`` is ``a.b``
    when that is a module, else ``a``; relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = project_modules(root)
    return {name: imported(path, name, set(modules)) for name, path in modules.items()}


# ------------------------------------------------------------------------------------------------ the rules

def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components with more than one module
    (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def upward_imports(graph: dict[str, set[str]], lower: str = "models", upper: str = "pipelines") -> list[str]:
    """``a -> b`` for every module of package ``lower`` that imports one of package ``upper``."""
    def within(name: str, package: str) -> bool:
        return name == package or name.startswith(package + ".")

    return sorted(f"{a} -> {b}" for a, targets in graph.items() if within(a, lower)
                  for b in targets if within(b, upper))


def command_imports(graph: dict[str, set[str]], commands=COMMANDS, dispatch: str = "pipelines.cli") -> list[str]:
    """``a -> b`` for every module other than the dispatch that imports a command module ``b``."""
    names = {f"pipelines.{c}" for c in commands}
    return sorted(f"{a} -> {b}" for a, targets in graph.items() if a != dispatch for b in targets & names)


def named_like_a_command(root: Path = REPO, commands=COMMANDS) -> list[str]:
    """Library modules (anywhere under ``pipelines/`` but its root) whose file name is a command's."""
    return sorted(path.relative_to(root).as_posix() for path in (root / "pipelines").rglob("*.py")
                  if path.parent != root / "pipelines" and path.stem in commands)


def oversized(root: Path = REPO, packages=("pipelines", "models"), limit: int = MAX_LINES) -> list[str]:
    """``file: N lines`` for every module of ``packages`` longer than ``limit`` lines."""
    out = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                out.append(f"{path.relative_to(root).as_posix()}: {lines} lines")
    return out


def root_problems(root: Path = REPO, commands=COMMANDS, root_files=ROOT_FILES,
                  data_folders=ROOT_DATA_FOLDERS) -> list[str]:
    """What the root of ``pipelines/`` holds besides the commands, ``root_files``, ``data_folders`` and package
    folders."""
    allowed = {f"{c}.py" for c in commands} | set(root_files)
    out = []
    for entry in sorted((root / "pipelines").iterdir()):
        if entry.name == "__pycache__" or (entry.is_dir() and entry.name in data_folders):
            continue
        if entry.is_dir():
            if not (entry / "__init__.py").is_file():
                out.append(f"{entry.name}/: a folder that is not a package")
        elif entry.name not in allowed:
            out.append(f"{entry.name}: neither a command, the dispatch nor a package")
    return out


def package_inits_with_code(root: Path = REPO, packages=("pipelines",)) -> list[str]:
    """``__init__.py`` files of ``packages`` that hold more than a docstring."""
    out = []
    for package in packages:
        for path in sorted((root / package).rglob("__init__.py")):
            body = ast.parse(path.read_text(encoding="utf-8")).body
            if any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, str)) for node in body):
                out.append(path.relative_to(root).as_posix())
    return out


# ------------------------------------------------------------------------------------------------ the repo

@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_models_import_nothing_from_pipelines(graph):
    assert not upward_imports(graph), upward_imports(graph)


def test_no_import_circle_between_project_modules(graph):
    assert not cycles(graph), cycles(graph)


def test_only_the_dispatch_imports_a_command_and_no_library_is_named_like_one(graph):
    from pipelines import cli

    assert sorted(module for module, _ in cli.SUBCOMMANDS.values() if module.startswith("pipelines.")) == \
        sorted(f"pipelines.{c}" for c in COMMANDS)
    assert not command_imports(graph), command_imports(graph)
    assert not named_like_a_command(), named_like_a_command()


def test_no_module_over_600_lines():
    assert not oversized(), oversized()


def test_the_root_of_pipelines_holds_only_commands_and_packages():
    assert not root_problems(), root_problems()
    assert not package_inits_with_code(), package_inits_with_code()


def test_the_graph_sees_the_real_imports(graph):
    """A few edges known to exist, one at the top of a module and one inside a function."""
    assert "pipelines.training.objective" in graph["pipelines.training.trainer"]
    assert "pipelines.training.fingerprint" in graph["pipelines.study"]  # imported inside a function
    assert "models.names" in graph["pipelines.core.config"]


# ------------------------------------------------------------------------------------------------ the rules fail

def test_each_rule_fails_on_a_graph_or_tree_that_breaks_it(tmp_path):
    circle = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(circle) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert upward_imports({"models.x": {"pipelines.core.y", "models.z"}, "pipelines.w": {"models.x"}}) == \
        ["models.x -> pipelines.core.y"]
    assert command_imports({"pipelines.cli": {"pipelines.train"}, "pipelines.training.x": {"pipelines.evaluate"}}) == \
        ["pipelines.training.x -> pipelines.evaluate"]

    fake = tmp_path / "repo"
    (fake / "pipelines" / "training").mkdir(parents=True)
    (fake / "pipelines" / "assets").mkdir()
    (fake / "models").mkdir()
    (fake / "reports").mkdir()
    for path, text in {"pipelines/__init__.py": '"""doc"""\n', "pipelines/cli.py": "", "pipelines/train.py": "",
                       "pipelines/helpers.py": "", "pipelines/training/__init__.py": "import os\n",
                       "pipelines/training/train.py": "", "models/__init__.py": '"""doc"""\n',
                       "models/big.py": "x = 1\n" * (MAX_LINES + 1), "reports/__init__.py": ""}.items():
        (fake / path).write_text(text)
    assert root_problems(fake) == ["assets/: a folder that is not a package",
                                   "helpers.py: neither a command, the dispatch nor a package"]
    assert named_like_a_command(fake) == ["pipelines/training/train.py"]
    assert oversized(fake) == [f"models/big.py: {MAX_LINES + 1} lines"]
    assert package_inits_with_code(fake) == ["pipelines/training/__init__.py"]


def test_the_scan_sees_every_form_of_import(tmp_path):
    (tmp_path / "pipelines" / "training").mkdir(parents=True)
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "training" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "evaluate.py").write_text("")
    forms = ["import pipelines.evaluate", "from pipelines import evaluate", "from pipelines.evaluate import run",
             "def f():\n    from .. import evaluate", "from ..evaluate import run"]
    modules = {"pipelines", "pipelines.training", "pipelines.evaluate"}
    for i, source in enumerate(forms):
        path = tmp_path / "pipelines" / "training" / f"m{i}.py"
        path.write_text(source + "\n")
        assert imported(path, f"pipelines.training.m{i}", modules | {f"pipelines.training.m{i}"}) == \
            {"pipelines.evaluate"}, source
