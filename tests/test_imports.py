"""No import cycles: every module imports alone in a fresh interpreter, and the graph is acyclic.

The first test catches what breaks at run time (as aiohttp's tests/test_circular_imports.py
does); the second catches a cycle before it breaks anything, function-level imports included
(imports under `if TYPE_CHECKING:` are left out: they never run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "center",
    "store_node",
    "pos_agent",
    "sync_protocol",
    "loyalty_engine",
    "printers",
    "demo",
)


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def import_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_the_import_graph_has_no_cycle() -> None:
    cycles = strongly_connected(import_graph())
    assert cycles == [], f"import cycles (break each at its seam): {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


_FORK_EACH = """
import importlib, os, sys, warnings
for name in sys.argv[2:]:  # third-party packages: loaded once, then shared by every child
    try:
        importlib.import_module(name)
    except ImportError:
        pass
failed = 0
running = 0
width = max(1, len(os.sched_getaffinity(0)))  # one child per core at a time
for module in sys.argv[1].split(","):
    if running >= width:
        _, status = os.wait()
        running -= 1
        failed += status != 0
    pid = os.fork()
    if pid == 0:
        warnings.simplefilter("error")
        try:
            importlib.import_module(module)
        except BaseException as exc:
            print(f"{module}: {type(exc).__name__}: {exc}", flush=True)
            os._exit(1)
        os._exit(0)
    running += 1
while running:
    _, status = os.wait()
    running -= 1
    failed += status != 0
sys.exit(1 if failed else 0)
"""

THIRD_PARTY = (
    "aiohttp",
    "aiohttp.web",
    "apscheduler.schedulers.asyncio",
    "msgpack",
    "psycopg",
    "sqlite_utils",
    "zeroconf",
    "zeroconf.asyncio",
    "serial",
    "escpos.printer",
    "requests",
    "pandas",
    "aiosmtpd.controller",
    "jinja2",
    "aiohttp_jinja2",
    "argon2",
    "pyotp",
    "nh3",
    "qrcode",
    "barcode",
)


@pytest.mark.timeout(300)
def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    """Each module in a fresh child (forked after the third-party libraries loaded, so only our
    modules are new to it), with warnings as errors."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _FORK_EACH, ",".join(modules()), *THIRD_PARTY],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


BENCHMARKS = sorted((REPO / "bench").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_every_benchmark_starts(script: Path) -> None:
    """Benchmarks run outside the suite: a refactor must not leave one that cannot start."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
