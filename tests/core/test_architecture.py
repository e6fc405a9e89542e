"""The architecture's arrows, enforced: every import in the product code goes only where its room may go.

Each .py file under core/, models/, export/, firmware_bridge/ and eval/ is parsed
with `ast` (never imported, so a forbidden arrow cannot hide behind a lazy
import or a missing dependency).  Every `import X`, `from X import Y` (also the
relative form), inside functions too, and every `importlib.import_module("X")` /
`__import__("X")` with a literal name counts as an arrow from the file's room to
the room of X.  docs/packages.md is the map; ROOM_MAY_IMPORT below is the rule.

A second rule: only eval/ reads or writes the report files.  Outside eval/, a
string literal that names report.json or report.md (the bare name or a path
ending in it), or the report folder as a path component (`run / "report"`), may
appear only in help/description text, docstrings, and the core modules that
compose the stages (which print where the report went), never as a path a stage
opens.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# folder in the repository -> dotted package it installs as (pyproject's package-dir)
ROOTS = {"core": "tinyexit", "models": "tinyexit.models", "export": "tinyexit.export",
         "firmware_bridge": "tinyexit.firmware_bridge", "eval": "tinyexit.eval"}
FB = "tinyexit.firmware_bridge"
# The rooms, most specific first: a module belongs to the first whose prefix it has.
ROOMS = (
    ("protocol", f"{FB}.protocol"), ("agent", f"{FB}.agent"), ("harness", f"{FB}.harness"),
    ("firmware", f"{FB}.firmware"), ("reliability", f"{FB}.reliability"), ("firmware_bridge", FB),
    ("models", "tinyexit.models"), ("export", "tinyexit.export"), ("eval", "tinyexit.eval"),
    ("core", "tinyexit"),
)
# Room -> rooms (or exact modules, given dotted) it may import; every room may import itself.
# firmware_bridge/__init__.py is its own small room: it names the subpackages' entry points only.
ROOM_MAY_IMPORT = {
    "core": set(),
    "models": {"core"},
    "export": {"core", "models"},
    "protocol": {"core"},
    "agent": {"core", "protocol"},
    # the host reference runs exactly what the agent runs; the QEMU target builds the firmware
    "harness": {"core", "protocol", f"{FB}.agent.runtime", "firmware"},
    "firmware": {"core", "protocol"},
    "reliability": {"core", "protocol", "harness", "firmware"},
    "firmware_bridge": {"core", "protocol", "agent", "harness", "firmware", "reliability"},
    "eval": {"core"},
}
# core composes the stages, so these files may name every room (by string or lazy import).
COMPOSERS = {"core/cli.py", "core/pipeline.py", "core/pipeline_cli.py", "core/profile_cli.py"}
REPORT_FILES = ("report.json", "report.md")


@dataclass(frozen=True)
class Arrow:
    file: str      # repository-relative path
    line: int
    source: str    # room of the file
    target: str    # imported module, dotted
    room: str      # room of the target

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.source} -> {self.room} ({self.target})"


def room_of(module: str) -> str | None:
    """The room of a dotted tinyexit module, or None for anything outside the project."""
    for room, prefix in ROOMS:
        if module == prefix or module.startswith(prefix + "."):
            return room
    return None


def module_of(rel: Path) -> str:
    """Dotted name of a repository-relative .py file (core/bundle.py -> tinyexit.bundle)."""
    parts = list(rel.with_suffix("").parts)
    pkg = ROOTS[parts[0]].split(".") + parts[1:]
    return ".".join(pkg[:-1] if pkg[-1] == "__init__" else pkg)


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> list[str]:
    """Absolute modules a `from X import a, b` reaches (a and b may be submodules or attributes)."""
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        head = ".".join(base + ([node.module] if node.module else []))
    else:
        head = node.module or ""
    # An attribute of module X is reported as X (one arrow per statement); a name imported from a
    # room's package (`from tinyexit.models import data`, `from tinyexit.firmware_bridge import agent`)
    # is a submodule, reported as itself.
    names = [f"{head}.{a.name}" for a in node.names if a.name != "*"]
    packages = {prefix for _, prefix in ROOMS}
    return list(dict.fromkeys(n if head in packages or room_of(n) != room_of(head) else head
                              for n in names)) or [head]


def imports_of(source: str, module: str, is_pkg: bool = False) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `source`, at any depth, plus literal import_module calls."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, n) for n in _resolve(node, module, is_pkg)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def _allowed(source_room: str, target: str, target_room: str) -> bool:
    if target_room == source_room:
        return True
    rules = ROOM_MAY_IMPORT[source_room]
    return target_room in rules or any(target == r or target.startswith(r + ".") for r in rules if "." in r)


def forbidden_arrows(rel: str, source: str) -> list[Arrow]:
    """The arrows of one file (repository-relative path, its text) that the architecture forbids."""
    path = Path(rel)
    module = module_of(path)
    src_room = room_of(module)
    bad = []
    for line, target in imports_of(source, module, path.name == "__init__.py"):
        room = room_of(target)
        if room is None or rel in COMPOSERS or _allowed(src_room, target, room):
            continue
        bad.append(Arrow(rel, line, src_room, target, room))
    return bad


def product_files() -> list[Path]:
    return sorted(p for root in ROOTS for p in (REPO / root).rglob("*.py"))


def _is_help_text(node: ast.Constant, parents: dict) -> bool:
    """A literal that is (part of) a help= / description= / epilog= argument, or a docstring."""
    up = parents.get(node)
    while isinstance(up, (ast.JoinedStr, ast.BinOp, ast.FormattedValue)):
        up = parents.get(up)
    if isinstance(up, ast.keyword) and up.arg in ("help", "description", "epilog", "usage"):
        return True
    return isinstance(up, ast.Expr)  # a bare string statement: a docstring or a comment-like literal


def report_file_literals(rel: str, source: str) -> list[str]:
    """file:line of every string literal outside eval/ naming a report file as a path, not in help text."""
    if rel.startswith("eval/") or rel in COMPOSERS:
        return []
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and not _is_help_text(node, parents):
            text = node.value.strip().rstrip("'\")")
            up = parents.get(node)
            report_dir = text == "report" and isinstance(up, ast.BinOp) and isinstance(up.op, ast.Div)
            if report_dir or any(text == name or text.endswith("/" + name) for name in REPORT_FILES):
                hits.append((node.lineno, node.col_offset, f"{rel}:{node.lineno}: {node.value!r}"))
    return [h for _, _, h in sorted(hits)]


# --- the rule, applied to the repository ---------------------------------------------------

def test_every_file_maps_to_a_room():
    files = product_files()
    assert len(files) > 50
    for p in files:
        assert room_of(module_of(p.relative_to(REPO))) is not None, p


def test_no_import_crosses_a_forbidden_arrow():
    bad = [str(a) for p in product_files()
           for a in forbidden_arrows(str(p.relative_to(REPO)), p.read_text())]
    assert not bad, "forbidden imports (see docs/packages.md):\n" + "\n".join(bad)


def test_only_eval_names_the_report_files():
    bad = [h for p in product_files() for h in report_file_literals(str(p.relative_to(REPO)), p.read_text())]
    assert not bad, "report.json / report.md named outside eval/ (only eval reads or writes them):\n" + "\n".join(bad)


# --- the rule itself works -------------------------------------------------------------------

@pytest.mark.parametrize("rel, source, arrow", [
    ("firmware_bridge/harness/x.py", "def f():\n    from tinyexit.models import data\n",
     "firmware_bridge/harness/x.py:2: harness -> models (tinyexit.models.data)"),
    ("firmware_bridge/agent/x.py", "import tinyexit.export.tflite_graph as g\n",
     "firmware_bridge/agent/x.py:1: agent -> export (tinyexit.export.tflite_graph)"),
    ("eval/x.py", "import importlib\nm = importlib.import_module('tinyexit.firmware_bridge.harness.summary')\n",
     "eval/x.py:2: eval -> harness (tinyexit.firmware_bridge.harness.summary)"),
    ("eval/x.py", "from tinyexit.export import codegen\n", "eval/x.py:1: eval -> export (tinyexit.export.codegen)"),
    ("models/x.py", "from ..export import onnx_export\n", "models/x.py:1: models -> export (tinyexit.export.onnx_export)"),
    ("firmware_bridge/protocol/x.py", "from tinyexit.firmware_bridge import agent\n",
     "firmware_bridge/protocol/x.py:1: protocol -> agent (tinyexit.firmware_bridge.agent)"),
    ("firmware_bridge/firmware/x.py", "from ..harness.link import SerialLink\n",
     "firmware_bridge/firmware/x.py:1: firmware -> harness (tinyexit.firmware_bridge.harness.link)"),
    ("core/x.py", "from tinyexit.models.train import train\n", "core/x.py:1: core -> models (tinyexit.models.train)"),
    ("firmware_bridge/harness/x.py", "from tinyexit.firmware_bridge.agent.server import serve\n",
     "firmware_bridge/harness/x.py:1: harness -> agent (tinyexit.firmware_bridge.agent.server)"),
])
def test_the_rule_catches_a_forbidden_import(rel, source, arrow):
    assert [str(a) for a in forbidden_arrows(rel, source)] == [arrow]


@pytest.mark.parametrize("rel, source", [
    ("firmware_bridge/harness/x.py", "from tinyexit.firmware_bridge.agent.runtime import open_runtime\n"
                                     "from tinyexit.bundle import load_bundle\nfrom ..protocol import framing\n"),
    ("firmware_bridge/harness/x.py", "from tinyexit.firmware_bridge.firmware.build import build\nimport numpy\n"),
    ("firmware_bridge/reliability/x.py", "from tinyexit.firmware_bridge.harness import faults\n"),
    ("export/x.py", "from tinyexit.models import data\nfrom . import tflite_graph\n"),
    ("eval/x.py", "from tinyexit.bundle import load_bundle\nfrom tinyexit.eval import energy\nimport torch\n"),
    ("core/pipeline.py", "def f():\n    from tinyexit.export.exporter import export\n"),
])
def test_the_rule_allows_the_architecture_arrows(rel, source):
    assert forbidden_arrows(rel, source) == []


def test_the_report_rule_catches_a_path_and_spares_help_text():
    src = ("import argparse\np = argparse.ArgumentParser(description='writes RUN/report/report.json')\n"
           "def f(run):\n    return (run / 'report' / 'report.json').read_text()\n"
           "def g(run):\n    return open(f'{run}/report/report.md')\n")
    assert report_file_literals("export/x.py", src) == ["export/x.py:4: 'report'", "export/x.py:4: 'report.json'",
                                                        "export/x.py:6: '/report/report.md'"]
    assert report_file_literals("eval/x.py", src) == []
