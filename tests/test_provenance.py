"""Provenance: the commit a result row records is `-dirty` for changed code, not for changed results."""
import subprocess

import pytest

from upstream.facts import git_commit


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "table.md").write_text("| a |\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    return tmp_path


def test_a_rewritten_results_table_is_not_dirty_code(repo):
    """A rerun rewrites the committed tables under results/: the next run's rows still name a clean
    commit (they recorded `-dirty` when a chained run followed one that had rewritten its table)."""
    git_commit.cache_clear()
    clean = git_commit(repo)
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (repo / "results" / "table.md").write_text("| b |\n")
    git_commit.cache_clear()
    assert git_commit(repo) == clean
    (repo / "code.py").write_text("x = 2\n")
    git_commit.cache_clear()
    assert git_commit(repo) == clean + "-dirty"
    git_commit.cache_clear()


def test_outside_git_is_unknown(tmp_path):
    git_commit.cache_clear()
    assert git_commit(tmp_path / "nowhere") == "unknown"
    git_commit.cache_clear()
