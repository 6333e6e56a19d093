"""Five hand-made mutations of the package that the test suite must catch (docs/development.md says which tests do).

Each is one textual change to a copy of the source (bench/, methods/, datasets/ and tests/ copied to a temporary
folder, the copy imported as ``regbench`` through PYTHONPATH): the working tree is never touched. The suite's
tests then run against the copy, and the tests that fail are listed. A mutation that fails no test is a hole in the
suite: exit status 1.

    python tests/mutations.py --list                  # the mutations
    python tests/mutations.py warp-sign               # one, against the fast lane (pytest -m "not slow" -n 2)
    python tests/mutations.py all -- tests/test_metrics.py -q   # each, against the tests named after --
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from import_graph import PACKAGE, ROOT  # the source folders and the package each is installed as

#: name -> (file, a regular expression, its replacement, how many times it must match, what the mutation breaks).
#: The count is checked, so that a refactoring that moves the text makes this script fail rather than test nothing.
MUTATIONS: dict[str, tuple[str, str, str, int, str]] = {
    "warp-sign": (
        "bench/warp.py",
        re.escape("coords = grid.unsqueeze(0) + flow"),
        "coords = grid.unsqueeze(0) - flow",
        1,
        "the warp samples moving(p - u(p)) instead of moving(p + u(p))",
    ),
    "no-holm": (
        "bench/stats.py",
        re.escape('reject, p_holm, _, _ = multipletests([r["p_value"] for r in tested], alpha=alpha, method="holm")'),
        'p_holm = [r["p_value"] for r in tested]; reject = [p < alpha for p in p_holm]',
        1,
        "the paired tests' p-values are not Holm-corrected",
    ),
    "ndv-simplex": (
        "bench/metrics.py",
        re.escape("for sign in (1, -1):\n            edges = [step(d, sign) for d in diagonals]"),
        "for sign in (1, 1):\n            edges = [step(d, sign) for d in diagonals]",
        1,
        "NDV's backward central tetrahedron is replaced by the forward one",
    ),
    "no-projection": (
        "methods/gradient_surgery.py",
        r"conflict = (dots?) < 0",
        r"conflict = \1 < float('-inf')",
        3,
        "the gradient-surgery projections (layer-wise and global, both forms) never see a conflict, so never project",
    ),
    "resume-recomputes": (
        "bench/runner.py",
        re.escape("pending = [p for p in test_pairs if p.key not in done]"),
        "pending = list(test_pairs)",
        1,
        "a resumed run registers its stored cases again",
    ),
}


def mutated_copy(name: str, into: Path) -> Path:
    """A copy of the source with mutation ``name`` applied; returns the folder to put on PYTHONPATH."""
    file, pattern, replacement, count, _ = MUTATIONS[name]
    tree = into / "tree"
    for folder in (*PACKAGE, "tests"):
        shutil.copytree(ROOT / folder, tree / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "import-graph.dot", tree / "docs")  # read by tests/test_contracts.py
    shutil.copy(ROOT / "pyproject.toml", tree)  # pytest's settings (markers)
    path = tree / file
    mutated, found = re.subn(pattern, replacement, path.read_text())
    if found != count:
        raise SystemExit(f"mutation {name}: expected {count} match(es) in {file}, found {found}: update tests/mutations.py")
    path.write_text(mutated)
    for folder, package in PACKAGE.items():  # regbench from bench/, regbench.methods from methods/, ...
        shutil.copytree(tree / folder, into / "pkg" / package.replace(".", os.sep))
    return into / "pkg"


def run(name: str, pytest_args: list[str]) -> list[str]:
    """The tests that fail with mutation ``name`` applied."""
    # Not "regbench" in the folder's name: a test asserts no top-level `methods` resolves to a path naming it.
    with tempfile.TemporaryDirectory(prefix=f"mutation-{name}-") as tmp:
        pythonpath = mutated_copy(name, Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]), "MPLBACKEND": "Agg"}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", *pytest_args],
            cwd=Path(tmp) / "tree",
            env=env,
            capture_output=True,
            text=True,
        )
    return [line.removeprefix("FAILED ").split(" - ")[0] for line in done.stdout.splitlines() if line.startswith("FAILED ")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help=f"a mutation ({', '.join(MUTATIONS)}) or 'all'")
    parser.add_argument("--list", action="store_true", help="list the mutations and what each breaks")
    argv = sys.argv[1:] if argv is None else argv
    own, pytest_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, ["-m", "not slow", "-n", "2"])
    args = parser.parse_args(own)
    if args.list or not args.name:
        for name, (file, *_, what) in MUTATIONS.items():
            print(f"{name:18} {file:28} {what}")
        return 0
    names = list(MUTATIONS) if args.name == "all" else [args.name]
    unknown = [n for n in names if n not in MUTATIONS]
    if unknown:
        parser.error(f"no mutation named {unknown[0]!r}; --list lists them")
    missed = []
    for name in names:
        failed = run(name, pytest_args)
        print(f"{name}: {len(failed)} test(s) fail" + "".join(f"\n  {test}" for test in failed), flush=True)
        if not failed:
            missed.append(name)
    if missed:
        print(f"not caught: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
