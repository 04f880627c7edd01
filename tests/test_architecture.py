"""The layout's promises (docs/architecture.md): arrows one way, no import cycle, each shared fact
defined once, no harness file over ~600 lines."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("upstream", "pretrain", "analysis", "harness")
HARNESS_LAYERS = {"harness.corpus": 0, "harness.s3prl": 1, "harness.features": 2, "harness.superb": 3,
                  "harness.cli": 4}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            cands = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in cands if c in MODULES and c != name and not name.startswith(c + "."))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> str | None:
    return next((pkg for pkg in HARNESS_LAYERS if name == pkg or name.startswith(pkg + ".")), None)


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        for v in sorted(GRAPH[u]):
            if state.get(v) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(v):] + [u, v]))
            if v not in state:
                visit(v, stack + [u])
        state[u] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [])


def test_arrows_point_one_way():
    bad = []
    for a, targets in GRAPH.items():
        for b in targets:
            if a.split(".")[0] != "harness" and b.startswith("harness"):
                bad.append(f"{a} -> {b} (nothing below imports harness)")
            la, lb = _layer(a), _layer(b)
            if la and lb and la != lb and HARNESS_LAYERS[lb] >= HARNESS_LAYERS[la]:
                bad.append(f"{a} -> {b} ({la} may not import {lb})")
    assert not bad, "\n".join(bad)


def _definitions(pattern: str) -> list[str]:
    rx = re.compile(pattern, re.M)
    return sorted(f"{p.relative_to(ROOT)}" for p in MODULES.values() for _ in rx.finditer(p.read_text()))


@pytest.mark.parametrize("pattern, where", [
    (r"^SAMPLE_RATE\s*=", ["upstream/facts.py"]),
    (r"^\s*def (sha256_file|weights_hash)\(", ["upstream/facts.py", "upstream/facts.py"]),
    (r"^\s*def git_commit\(", ["upstream/facts.py"]),
    (r"^\s*def machine\(", ["upstream/facts.py"]),
    (r"^\s*def (atomic_open|atomic_write_bytes|atomic_write_text|atomic_write_json|atomic_save_npy)\(",
     ["upstream/facts.py"] * 5),
    (r"os\.replace\(", ["upstream/facts.py"]),
    (r"mkstemp\(", ["upstream/facts.py"]),
    (r"\btqdm\(", ["upstream/facts.py"]),              # every progress bar is facts.progress_bar
    (r"^\s*def resolve_corpus\(", ["harness/corpus/resolve.py", "harness/features/analysis_io.py",
                                   "harness/superb/sweep.py"]),
])
def test_each_fact_has_one_definition(pattern, where):
    # resolve_corpus: the two harness wrappers only translate the error type of the one in corpus/resolve.py
    assert _definitions(pattern) == sorted(where)


def test_progress_bars_stay_off_logs(capsys):
    """A bar is drawn on a terminal only: under pytest stderr is captured (not a terminal), so even an
    enabled bar writes nothing; ``enabled=False`` disables it everywhere."""
    from upstream.facts import progress_bar
    for enabled in (True, False):
        with progress_bar(range(3), enabled=enabled, desc="x") as bar:
            assert list(bar) == [0, 1, 2] and bar.disable
    assert capsys.readouterr().err == ""


def test_layer_ranges_parsed_once():
    assert _definitions(r"^\s*def parse_layers\(") == ["upstream/facts.py"]
    assert not _definitions(r"_LAYER_RE|def check_layer_range"), "hand-rolled layer-range parsing"


def test_no_sample_rate_literal_in_code():
    hits = []
    for p in MODULES.values():
        if p.name == "facts.py":
            continue
        for tok in tokenize.generate_tokens(io.StringIO(p.read_text()).readline):
            if tok.type == tokenize.NUMBER and tok.string in ("16000", "16_000", "16000.0", "16e3"):
                hits.append(f"{p.relative_to(ROOT)}:{tok.start[0]}")
    assert not hits, f"write upstream.facts.SAMPLE_RATE instead of 16000 at {hits}"


def test_duet_names_come_from_the_registry():
    from harness.superb.upstreams import UPSTREAMS as HARNESS_UPSTREAMS
    from upstream.hub import UPSTREAMS as HUB
    from upstream.registry import MODELS

    assert set(HUB) == set(MODELS)
    assert {n for n, u in HARNESS_UPSTREAMS.items() if u.duet} == set(MODELS)


def test_harness_files_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "harness").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 600}
    assert not big, f"split these files (over 600 lines): {big}"
