"""Write tests/data/abx_librilight.json: the Libri-light ABX (PyPI `zerospeech-libriabx2`, bench-only)
on the seeded synthetic cases of bench/abx_reference.py, so CI checks DUET's ABX against it without
installing the reference.

    .venv/bin/pip install -c scripts/constraints.txt zerospeech-libriabx2==0.9.8
    .venv/bin/python -m tests.make_abx_fixture
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from bench.abx_reference import run_librilight, synthetic_case
from upstream.facts import atomic_write_json, git_commit

FIXTURE = Path(__file__).parent / "data" / "abx_librilight.json"
CASES = [{"n_files": 24, "seed": 0}, {"n_files": 40, "seed": 3}]


def main() -> None:
    import importlib.metadata as md

    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            ref = run_librilight(synthetic_case(Path(d), **case))
        rows.append({**case, "within": ref["within"], "across": ref["across"]})
    atomic_write_json(FIXTURE, {"made_by": "python -m tests.make_abx_fixture", "commit": git_commit(),
                                "reference": f"zerospeech-libriabx2 {md.version('zerospeech-libriabx2')}",
                                "cases": rows})
    print(FIXTURE.read_text())


if __name__ == "__main__":
    main()
