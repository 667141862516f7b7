"""The package's shape: stage folders, no import circles, lower layers never import jobs/ or cli/,
importing the jobs stays light, and modules stay readable in size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "faceswap_kohya"
UPPER = ("faceswap_kohya.__main__", "faceswap_kohya.jobs", "faceswap_kohya.cli", "faceswap_kohya.web",
         "faceswap_kohya.service")


def modules() -> dict[str, Path]:
    found = {}
    for f in PKG.rglob("*.py"):
        if "side" in f.relative_to(PKG).parts:  # scripts run by the trainer's python, never imported
            continue
        name = ".".join(f.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = f
    return found


def import_graph(top_level_only: bool = False) -> dict[str, set[str]]:
    """module → the package modules it imports (inside functions too, unless top_level_only)."""
    mods = modules()
    graph = {}
    for name, f in mods.items():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        targets = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:
                    targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state, stack = {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if not state.get(v) and (cycle := visit(v)):
                return cycle
        stack.pop()
        state[u] = 2
        return []

    for m in sorted(graph):
        if not state.get(m) and (cycle := visit(m)):
            return cycle
    return []


def test_stage_folders_exist():
    for folder in ("config", "runs", "files", "models", "faces", "data", "trainer", "formats", "diffusion", "scoring",
                   "sweeps", "jobs", "cli", "web"):
        assert (PKG / folder / "__init__.py").is_file(), folder
    assert len([p for p in PKG.glob("*.py")]) <= 4, "the package root keeps only __init__, __main__, errors, events"


def test_no_import_circles():
    # Package __init__ files that only re-export their own submodules (cli/) are edges to children: not circles.
    graph = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")}
             for m, ts in import_graph().items()}
    assert find_cycle(graph) == []


def package_of(module: str) -> str:
    """`faceswap_kohya.trainer.launch` → `trainer`; the root's own modules (`errors`, `events`) are their own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph() -> dict[str, set[str]]:
    """package → the packages it imports, module-level imports and those inside functions alike."""
    graph: dict[str, set[str]] = {}
    for m, ts in import_graph().items():
        graph.setdefault(package_of(m), set()).update(package_of(t) for t in ts)
    return {p: ts - {p} for p, ts in graph.items()}


def test_no_package_imports_one_that_imports_it_back():
    # cli/__init__ and web/__init__ only name their children; every other edge counts, with no exemption.
    assert find_cycle(package_graph()) == []


def test_the_package_graph_sees_a_loop_between_packages():
    graph = package_graph()
    graph["runs"] = graph["runs"] | {"jobs"}  # as if the run folder's package asked a job
    assert find_cycle(graph)


def test_find_cycle_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_lower_layers_never_import_jobs_or_cli():
    bad = [(m, t) for m, ts in import_graph().items() if not m.startswith(UPPER)
           for t in ts if t.startswith(UPPER)]
    assert bad == []


def test_importing_the_jobs_is_light():
    code = ("import sys, pkgutil, importlib, faceswap_kohya.jobs as j\n"
            "for m in pkgutil.iter_modules(j.__path__): importlib.import_module('faceswap_kohya.jobs.' + m.name)\n"
            "heavy = sorted(h for h in ('click', 'torch', 'diffusers', 'gradio', 'transformers', 'dlib', 'ray') "
            "if h in sys.modules)\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing the jobs loaded {out.stdout.strip()}"


def test_modules_stay_readable():
    long_modules = {m: n for m, f in modules().items() if (n := len(f.read_text(encoding="utf-8").splitlines())) > 420}
    assert long_modules == {}


def test_long_functions_say_why():
    """A function over ~80 lines carries a comment saying why (e.g. a table-driven converter)."""
    unexplained = []
    for name, f in modules().items():
        lines = f.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 85:
                head = "\n".join(lines[node.lineno - 1: node.lineno + 8])
                if "long:" not in head:
                    unexplained.append(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert unexplained == []


def test_every_subpackage_is_installed():
    """pyproject.toml lists the sub-packages by hand (the presets folder is mapped into the package)."""
    import tomllib

    listed = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(PKG.parent).parts) for p in PKG.rglob("__init__.py")
               if "side" not in p.parts}
    assert folders <= listed and "faceswap_kohya.presets" in listed


def test_an_installed_copy_finds_its_presets_and_trainer_settings(tmp_path):
    """`pip install .` (not editable), then `presets ls` from another folder lists the shipped presets."""
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(PKG.parent)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (target / "faceswap_kohya" / "presets" / "face-12gb.yaml").is_file()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("FACESWAP_KOHYA")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-m", "faceswap_kohya", "presets", "ls"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {"cpu-check", "face-8gb", "face-12gb", "face-24gb"} <= {ln.split()[0] for ln in out.stdout.splitlines()[1:]}
    code = ("import faceswap_kohya.config.presets as p, faceswap_kohya.trainer.install as t; "
            "tr = t.Trainer.of(p.load('face-12gb')[0]); print(p.PRESETS_DIR); print(tr.sd_scripts); print(tr.python)")
    env.update(FACESWAP_KOHYA_SD_SCRIPTS="/opt/sd-scripts", FACESWAP_KOHYA_PYTHON="/opt/kohya/bin/python")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    presets_dir, sd_scripts, python = out.stdout.split()
    assert Path(presets_dir).is_relative_to(target)
    assert (sd_scripts, python) == ("/opt/sd-scripts", "/opt/kohya/bin/python")
