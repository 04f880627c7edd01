"""A 10-minute input runs through an expert (jooci compact, eval + no_grad) without running out of
memory; peak RSS is measured in a fresh subprocess. Slow (minutes on 2 shared cores): --runslow."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env

SCRIPT = r"""
import json, resource, sys, time, torch
import harness.s3prl.compat; harness.s3prl.compat.install()
from upstream.hub import UPSTREAMS
torch.set_num_threads(1)
name, minutes = sys.argv[1], float(sys.argv[2])
up = UPSTREAMS[name](model_config={"random_init": "compact", "seed": 0}).eval()
n = int(minutes * 60 * 16000)
wav = 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(0))
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
with torch.no_grad():
    feats = up([wav])
wall = time.time() - t
shapes = {k: list(v[0].shape) for k, v in feats.items()}
finite = all(bool(torch.isfinite(t).all()) for v in feats.values() for t in v)
print(json.dumps({"wall_s": wall, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "rss_before_gb": rss0 / 1e6, "shapes": shapes, "finite": finite}))
"""


@pytest.mark.slow
def test_ten_minute_input_jooci_compact():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "jooci", "10"], env=cli_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(res)
    assert res["finite"]
    assert res["shapes"]["content"][1] == pytest.approx(600 * 16000 / 320, abs=5)
    assert res["shapes"]["other"][1] == pytest.approx(600 * 16000 / 3200, abs=5)
    assert res["peak_rss_gb"] < 12, res  # the machine has 24 GiB; attention must not be quadratic in memory
