"""The package's import graph, read from the source (module-level and function-level imports alike).

`tests/test_contracts.py` fails on a cycle and on a stale `docs/import-graph.dot`; run this file to redraw the
picture after a change to the package's imports:

    python tests/import_graph.py          # writes docs/import-graph.dot, and docs/import-graph.svg where Graphviz's dot exists
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = {"bench": "regbench", "methods": "regbench.methods", "datasets": "regbench.datasets"}
ROOT = Path(__file__).resolve().parent.parent
DOT_FILE = ROOT / "docs" / "import-graph.dot"


def package_modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module in the package's three source folders."""
    out = {}
    for folder, package in PACKAGE.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (at module level or inside functions)."""
    modules = package_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            graph[module] |= {c for c in candidates if c in modules and c != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a closed path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def to_dot(graph: dict[str, set[str]]) -> str:
    """Graphviz source: one cluster per source folder, an edge from importer to imported, in sorted order."""

    def folder_of(module: str) -> str:
        """The source folder whose package is the longest prefix of the module's name."""
        return max((f for f, p in PACKAGE.items() if module == p or module.startswith(p + ".")), key=lambda f: len(PACKAGE[f]))

    def short(module: str) -> str:
        return module.removeprefix(PACKAGE[folder_of(module)] + ".") if module not in PACKAGE.values() else "__init__"

    lines = [
        "// The import graph of the regbench package, written by tests/import_graph.py; tests/test_contracts.py",
        "// checks that it matches the source. An edge points from the importing module to the imported one.",
        "digraph regbench_imports {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.12, ranksep=0.9];',
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fa", fontname="Helvetica", fontsize=10, height=0.25];',
        '  edge [color="#7d8ca3", arrowsize=0.5];',
    ]
    for folder, package in PACKAGE.items():
        members = sorted(m for m in graph if folder_of(m) == folder)
        lines.append(f'  subgraph "cluster_{folder}" {{ label="{folder}/ ({package})"; style=dashed; color="#9aa5b5";')
        lines += [f'    "{m}" [label="{short(m)}"];' for m in members]
        lines.append("  }")
    lines += [f'  "{a}" -> "{b}";' for a in sorted(graph) for b in sorted(graph[a])]
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    graph = import_graph()
    if cycle := find_cycle(graph):
        print("import cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    DOT_FILE.write_text(to_dot(graph))
    print(f"wrote {DOT_FILE.relative_to(ROOT)} ({len(graph)} modules, {sum(map(len, graph.values()))} imports)")
    if dot := shutil.which("dot"):
        svg = DOT_FILE.with_suffix(".svg")
        subprocess.run([dot, "-Tsvg", str(DOT_FILE), "-o", str(svg)], check=True)
        print(f"wrote {svg.relative_to(ROOT)}")
    else:
        print("Graphviz's dot not found: the SVG was not redrawn (apt-get install graphviz)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
