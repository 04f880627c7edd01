"""Every DUET expert reproduces its stored reference outputs (tests/references/*.json, made by
tests/make_references.py from a seeded tiny model): catches unintended changes of model code,
of initialisation, or of the key/layer mapping."""
import json

import pytest

from tests.make_references import REF_DIR, compute

NAMES = ["learn2diss", "jooci", "barlow_twins", "hubert_compact"]
ATOL = 1e-3


def compare(got, ref):
    assert got["rates"] == ref["rates"]
    assert sorted(got["keys"]) == sorted(ref["keys"])
    for key, r in ref["keys"].items():
        g = got["keys"][key]
        assert g["shapes"] == r["shapes"], key
        for field in ("mean", "std"):
            assert g[field] == pytest.approx(r[field], abs=ATOL), (key, field)
        for field in ("slice_first", "slice_last"):
            flat_g = [v for row in g[field] for v in row]
            flat_r = [v for row in r[field] for v in row]
            assert flat_g == pytest.approx(flat_r, abs=ATOL), (key, field)


def load(name):
    path = REF_DIR / f"{name}.json"
    assert path.is_file(), f"{path} missing: run PYTHONPATH=. python tests/make_references.py {name}"
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_matches_stored_reference(name):
    compare(compute(name), load(name))


def test_another_seed_does_not_match():
    """The comparison is sensitive: a model initialised with another seed fails it."""
    with pytest.raises(AssertionError):
        compare(compute("hubert_compact", {"random_init": "tiny", "seed": 1}), load("hubert_compact"))


def test_references_are_small():
    total = sum(p.stat().st_size for p in REF_DIR.glob("*.json"))
    assert total < 50_000


@pytest.mark.parametrize("name", NAMES)
def test_bundled_checkpoint_matches_its_reference(name):
    """The bundled checkpoints (conv front-end, written before the `frontend` config field) still
    load and give the outputs stored from the code that trained them (tests/references/bundled_*)."""
    compare(compute(name, bundled=True), load(f"bundled_{name}"))
