"""The allowed imports between the project's folders, checked on the source.

Every import of every product module is read with ``ast`` (module level and inside
functions; ``if TYPE_CHECKING:`` blocks excepted, they never run) and checked against
``ALLOWED``, the table the README's architecture section shows. The module graph must
also be free of cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("stratastream", "sampler", "drift", "snapshot_format", "trainer", "streamproc", "devtools")

# folder -> the folders its modules may import (besides itself). Longest folder wins.
ALLOWED: dict[str, set[str]] = {
    "stratastream": set(),
    "streamproc": set(),  # the package's __init__ (a docstring)
    "sampler": {"stratastream"},
    "drift": {"stratastream", "sampler"},
    "snapshot_format": {"stratastream"},
    "trainer": {"stratastream", "snapshot_format"},
    "streamproc.settings": {"stratastream", "sampler", "drift"},
    "streamproc.decode": {"stratastream", "sampler"},
    "streamproc.state": {"stratastream", "sampler", "streamproc.decode"},
    "streamproc.snapshot": {"stratastream", "sampler", "snapshot_format", "streamproc.state"},
    "streamproc.ops": {"stratastream"},
    "streamproc.hitl": {"stratastream", "streamproc.settings"},
    "streamproc.hitl.predictor": {"stratastream", "streamproc.hitl", "trainer"},
    "streamproc.worker": {
        "stratastream",
        "sampler",
        "drift",
        "snapshot_format",
        "streamproc.settings",
        "streamproc.decode",
        "streamproc.state",
        "streamproc.snapshot",
        "streamproc.ops",
        "streamproc.hitl",
    },  # fmt: skip
    "streamproc.feed": {"stratastream", "streamproc.decode"},
    "streamproc.cli": {
        "stratastream",
        "snapshot_format",
        "streamproc.settings",
        "streamproc.worker",
        "streamproc.feed",
    },  # fmt: skip
    "devtools": {"stratastream", "sampler", "snapshot_format", "streamproc"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:  # noqa: D103
    out = {}
    for top in OURS:
        for p in (ROOT / top).rglob("*.py"):
            out[_module_name(p)] = p
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(mod: str, path: Path) -> set[str]:
    """Our modules that ``mod`` imports (resolved, relative imports included)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for n in child.orelse:
                    visit(n)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                # `from pkg import module` imports the module; other names come from pkg
                subs = {f"{target}.{a.name}" for a in child.names}
                known = subs & set(MODULES)
                found.update(known)
                if len(known) < len(subs):
                    found.add(target)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {f for f in found if f.split(".")[0] in OURS}


def _folder_rule(mod: str) -> tuple[str, set[str]]:
    best = max((k for k in ALLOWED if mod == k or mod.startswith(k + ".")), key=len)
    return best, ALLOWED[best]


def _allowed(mod: str, target: str) -> bool:
    folder, allowed = _folder_rule(mod)
    # the folder itself, and everything above it in its package that is a package __init__
    homes = {folder} | allowed
    if folder.startswith("streamproc.") and target == "streamproc":
        return True
    return any(target == h or target.startswith(h + ".") for h in homes)


GRAPH = {m: {t for t in _imports(m, p) if t in MODULES} for m, p in MODULES.items()}
RAW = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_product_module_has_a_rule() -> None:
    for mod in MODULES:
        _folder_rule(mod)  # raises ValueError when no folder rule matches


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_follow_the_table(mod: str) -> None:
    bad = sorted(t for t in RAW[mod] if not _allowed(mod, t))
    assert not bad, f"{mod} imports {bad}: not allowed by {_folder_rule(mod)[0]!r}"


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            dfs(m)


def test_devtools_is_never_imported_by_product_code() -> None:
    users = sorted(
        m for m in MODULES if not m.startswith("devtools") and any(
            t.startswith("devtools") for t in RAW[m]
        )
    )  # fmt: skip
    assert users == []


def test_only_the_predictor_imports_trainer() -> None:
    users = sorted(
        m for m in MODULES if m.startswith("streamproc") and any(
            t.split(".")[0] == "trainer" for t in RAW[m]
        )
    )  # fmt: skip
    assert users == ["streamproc.hitl.predictor"]


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The rules bite: an upward import written into a sampler module is reported."""
    p = tmp_path / "bad.py"
    p.write_text("def f():\n    from streamproc.settings import Settings\n")
    found = _imports("sampler.bad", p)
    assert "streamproc.settings" in found and not _allowed("sampler.bad", "streamproc.settings")
