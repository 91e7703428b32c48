"""The package's shape: every module imports on its own, no import cycles between modules or packages
(function-level imports included: they would only hide a cycle), and an import inside a function says why
on its line or the line above (an optional or heavy dependency, keeping `esc2c --help` fast)."""
import ast
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import esc2c

ROOT = Path(esc2c.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _package(mod: str) -> str:
    return mod if MODULES[mod].name == "__init__.py" else mod.rsplit(".", 1)[0]


def _resolve(name: str) -> str | None:
    while name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def _imports(mod: str):
    """(target module, import node, nested?) for every esc2c import of ``mod`` and every nested import."""
    tree = ast.parse(MODULES[mod].read_text())
    top = {id(n) for n in tree.body}
    pkg = _package(mod)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        targets = {t for t in map(_resolve, (n for n in names if n.startswith("esc2c"))) if t and t != mod}
        yield targets, node, id(node) not in top


def _graph() -> dict[str, set[str]]:
    g = defaultdict(set)
    for m in MODULES:
        for targets, _, _ in _imports(m):
            g[m] |= {t for t in targets if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(g.get(u, ())):
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif not state.get(v):
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for u in sorted(g):
        if not state.get(u):
            visit(u, [])
    return found


def test_no_import_cycles_between_modules():
    cycles = _cycles(_graph())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_between_packages():
    pg = defaultdict(set)
    for a, targets in _graph().items():
        for b in targets:
            pa, pb = _package(a), _package(b)
            if not (pa == pb or pa.startswith(pb + ".") or pb.startswith(pa + ".")):
                pg[pa].add(pb)
    cycles = _cycles(pg)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_function_level_imports_say_why():
    bare = []
    for m, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _, node, nested in _imports(m):
            if nested and "#" not in lines[node.lineno - 1] and not lines[node.lineno - 2].strip().startswith("#"):
                bare.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bare, "imports inside functions without a reason:\n" + "\n".join(bare)


def test_every_module_imports_in_a_fresh_interpreter():
    """Each module imported with no esc2c module loaded before it (third-party ones stay cached)."""
    names = [m for m in MODULES if not m.endswith("__main__")]
    code = (
        "import importlib, sys, traceback\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    for k in [k for k in sys.modules if k == 'esc2c' or k.startswith('esc2c.')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       cwd=ROOT.parent)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


@pytest.mark.slow
def test_every_module_imports_alone_in_its_own_interpreter():
    """`python -c "import esc2c.x.y"` for every module, each in a new process (a few minutes: torch loads
    each time); the fast test above reloads only esc2c's modules."""
    names = [m for m in MODULES if not m.endswith("__main__")]

    def one(name):
        r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=300,
                           cwd=ROOT.parent)
        return None if r.returncode == 0 else f"{name}: {r.stderr.strip().splitlines()[-1:]}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        bad = [b for b in pool.map(one, names) if b]
    assert not bad, "\n".join(bad)
