"""The house plan holds: common's layers import downwards only, nothing imports in a circle, and the rooms
that must stay light (a service's use cases, `swarm streams`) load no web framework.

The contracts live in pyproject.toml (`[tool.importlinter]`, run by `make lint`); these tests run them
too, check that they name every package of `common`, and that they do catch a wrong import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "common"
PROJECT_PACKAGES = ("common", "auth_svc", "project_svc", "comment_svc", "notif_svc", "gateway")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def importlinter_config() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def layers_contract() -> dict:  # type: ignore[type-arg]
    [contract] = [c for c in importlinter_config()["contracts"] if c["id"] == "common-layers"]
    return contract


def layer_members(contract: dict) -> set[str]:  # type: ignore[type-arg]
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def lint_imports(cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(LINT_IMPORTS), "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_every_import_contract_of_the_project_is_kept() -> None:
    result = lint_imports(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_the_layers_contract_names_every_package_and_module_of_common() -> None:
    children = {
        f"common.{path.stem if path.is_file() else path.name}"
        for path in COMMON.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists()) or (path.suffix == ".py" and path.stem != "__init__")
    }

    assert layer_members(layers_contract()) == children


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(COMMON, tmp_path / "common", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "common" / "core" / "shortcut.py").write_text(
        '"""A deliberately wrong import: the ground floor reaching up to the operator tool."""\n'
        "from common.swarm import cli\n"
    )
    layers = ",\n".join(f'    "{layer}"' for layer in layers_contract()["layers"])
    config = tmp_path / "contract.toml"
    config.write_text(
        textwrap.dedent(
            """\
            [tool.importlinter]
            root_packages = ["common"]

            [[tool.importlinter.contracts]]
            name = "layers"
            type = "layers"
            layers = [
            {layers}
            ]
            """
        ).format(layers=layers)
    )

    result = lint_imports(tmp_path, config)

    assert result.returncode != 0
    assert "common.core.shortcut -> common.swarm" in result.stdout


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_module_of_the_project_imports_itself_in_a_circle() -> None:
    graph = grimp.build_graph(*PROJECT_PACKAGES)
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        targets = set(graph.find_modules_directly_imported_by(module))
        # A package's __init__ gathering its own modules, or a module importing its parent package, are
        # not ties between designs (the same allowance as the house checker's).
        edges[module] = {t for t in targets if not t.startswith(module + ".") and not module.startswith(t + ".")}

    assert _cycles(edges) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def loaded_after_importing(*modules: str) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


@pytest.mark.parametrize("service", ["auth_svc", "project_svc", "comment_svc", "notif_svc"])
def test_importing_a_services_use_cases_loads_no_http_framework_and_no_document_generator(service: str) -> None:
    loaded = loaded_after_importing(f"{service}.service")

    assert f"{service}.service" in loaded
    assert not top_level(loaded) & {"aiohttp", "apispec"}
    assert not {m for m in loaded if m.startswith(("common.http", "common.docs"))}


def loaded_after_running_swarm(*args: str) -> set[str]:
    code = (
        f"import sys; sys.argv = ['swarm', *{list(args)!r}]\n"
        "from common.swarm.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Usage: swarm" in result.stdout, result.stdout + result.stderr
    return set(result.stderr.split())


@pytest.mark.parametrize("args", [(), ("streams", "--help")], ids=["importing", "running --help"])
def test_swarm_streams_loads_no_service_runtime(args: tuple[str, ...]) -> None:
    loaded = loaded_after_running_swarm(*args) if args else loaded_after_importing("common.swarm.streams_cli")

    assert "common.swarm.streams_cli.browse" in loaded
    assert not {m for m in loaded if m.startswith(("common.service", "common.http"))}
    assert not top_level(loaded) & {"aiohttp", "auth_svc", "project_svc", "comment_svc", "notif_svc", "gateway"}
