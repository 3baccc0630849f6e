"""The import rules of DEVELOPERS.md, checked on the source text (every import statement, at
module level or inside a function):

- layers run one way: spvit (the CLI) -> sim -> rtl_gen -> golden -> base, and quant -> golden;
  sim may use quant (packages, calibration), quant and rtl_gen never see each other;
- no circle between modules, not even through an import inside a function;
- an import inside a function is only for an optional or heavy dependency: a third-party
  package such as torch, matplotlib or ray, or a project module that loads one of them when it
  is imported (the CLI and the torch-free parts of golden defer those).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("base", "golden", "quant", "rtl_gen", "driver", "sim", "spvit")
# what each package may import from the project (itself included)
ALLOWED = {
    "base": {"base"},
    "golden": {"golden", "base"},
    "quant": {"quant", "golden", "base"},
    "rtl_gen": {"rtl_gen", "golden", "base"},
    "driver": {"driver", "golden", "base"},          # the host driver: runs on a board without torch or Amaranth
    "sim": {"sim", "rtl_gen", "driver", "quant", "golden", "base"},
    "spvit": set(PACKAGES),
}
# third-party packages that may be imported inside a function: optional extras, or heavy to load
HEAVY = {"torch", "matplotlib", "ray", "onnx", "onnxruntime", "sklearn", "PIL", "tqdm", "safetensors", "scipy",
         "pynq"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, line, inside a function) of every import statement in the file."""
    tree = ast.parse(path.read_text())
    me = _module(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")[:len(pkg.split(".")) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module
                if mod == "__future__":
                    continue
                # `from pkg import name`: the edge goes to pkg.name when that is a module
                for a in child.names:
                    sub = ROOT / Path(*f"{mod}.{a.name}".split("."))
                    target = f"{mod}.{a.name}" if sub.with_suffix(".py").exists() or sub.is_dir() else mod
                    out.append((target, child.lineno, nested))
            else:
                visit(child, inner)
    visit(tree, False)
    return out


def _files():
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _graph():
    edges = {}
    for f in _files():
        me = _module(f)
        edges[me] = {(m, line, nested) for m, line, nested in _imports(f) if m.split(".")[0] in PACKAGES}
    return edges


def test_layers_run_one_way():
    bad = []
    for f in _files():
        top = _module(f).split(".")[0]
        for m, line, _ in _imports(f):
            if m.split(".")[0] in PACKAGES and m.split(".")[0] not in ALLOWED[top]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {m}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_circles():
    graph = _graph()
    mods = set(graph)

    def resolve(m):            # an import of a package or a name in it counts as its module
        while m and m not in mods:
            m = m.rpartition(".")[0]
        return m
    adj = {a: {resolve(m) for m, _, _ in es} - {a, ""} for a, es in graph.items()}
    # a package's __init__ that imports its own submodules is not a circle with them
    adj = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in adj.items()}
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))
    for v in sorted(adj):
        if v not in index:
            strong(v)
    assert not sccs, "import circles:\n" + "\n".join(" <-> ".join(c) for c in sccs)


def _heavy_modules() -> set:
    """Project modules that load a HEAVY package when imported (directly or through others)."""
    mods = {_module(f): [(m, nested) for m, _, nested in _imports(f)] for f in _files()}
    heavy = {m for m, imps in mods.items() if any(i.split(".")[0] in HEAVY and not n for i, n in imps)}
    while True:
        more = {m for m, imps in mods.items() if m not in heavy
                and any(not n and any(i == h or i.startswith(h + ".") for h in heavy) for i, n in imps)}
        if not more:
            return heavy
        heavy |= more


def test_function_level_imports_are_for_heavy_dependencies():
    heavy = _heavy_modules()
    bad = []
    for f in _files():
        rel = str(f.relative_to(ROOT))
        for m, line, nested in _imports(f):
            if not nested or m.split(".")[0] in HEAVY or any(m == h or m.startswith(h + ".") for h in heavy):
                continue
            bad.append(f"{rel}:{line} imports {m} inside a function")
    assert not bad, ("imports inside functions that are neither optional nor heavy (move them to the top of "
                     "the module):\n" + "\n".join(bad))
