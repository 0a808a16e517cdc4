"""Architecture checks the import-linter contract does not cover: cycles, module sizes, the top level.

    python scripts/check_architecture.py [SRC_DIR]

Every `import` statement counts, including those inside functions and under
`if TYPE_CHECKING:` (a lazy import is still a dependency). `from .pkg import name`
counts as an import of `pkg.name` when that is a module, else of `pkg`. Exits 1
when a check fails.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "restorecli"
MAX_LINES = 500  # per module, outside nets/ (networks keep one file per official architecture)
MAX_TOP_LEVEL = 10  # .py modules directly in the package folder
MAX_FUNCTION_LINES = 80  # per function, outside nets/: longer ones are split into named steps


def modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package under `src`."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, module: str, is_package: bool, level: int) -> str:
    if level == 0:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The package modules `module` imports anywhere in its source."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", module, is_package, node.level)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a non-module attribute: its module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != module:
                found.add(target)
    return found


def graph(src: Path) -> dict[str, set[str]]:
    mods = modules(src)
    return {m: imports(m, p, mods) for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def oversized(src: Path) -> list[tuple[str, int]]:
    """Modules over MAX_LINES lines, outside nets/."""
    out = []
    for module, path in modules(src).items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and not module.startswith(f"{PACKAGE}.nets."):
            out.append((module, lines))
    return out


def long_functions(src: Path) -> list[tuple[str, str, int]]:
    """Functions over MAX_FUNCTION_LINES lines (signature and body), outside nets/: (module, name, lines)."""
    out = []
    for module, path in modules(src).items():
        if module.startswith(f"{PACKAGE}.nets."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append((module, node.name, lines))
    return out


def top_level(src: Path) -> list[str]:
    return sorted(p.name for p in (src / PACKAGE).glob("*.py"))


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    edges = graph(src)
    found = cycles(edges)
    big = oversized(src)
    top = top_level(src)
    long = long_functions(src)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} internal imports (lazy ones included)")
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    print(f"modules over {MAX_LINES} lines outside nets/: {len(big)}")
    for module, lines in big:
        print(f"  {module}: {lines}")
    print(f"functions over {MAX_FUNCTION_LINES} lines outside nets/: {len(long)}")
    for module, name, lines in long:
        print(f"  {module}.{name}: {lines}")
    print(f"top-level modules: {len(top)} (at most {MAX_TOP_LEVEL}): {', '.join(top)}")
    return 1 if found or big or long or len(top) > MAX_TOP_LEVEL else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
