"""Write, once, the bytecode of the modules DUET's processes import (scripts/setup.sh runs this).

``scripts/setup.sh`` installs with ``pip --no-compile``: byte-compiling every file of torch, scipy,
transformers & co. was about 110 s of a 180 s set-up on 2 cores, for files most of which no DUET
process ever imports. Instead this imports what DUET's processes do import (the harness, the
store builders, s3prl's runner and the task experts, the models, the analysis), with bytecode
writing switched on in this process whatever ``PYTHONDONTWRITEBYTECODE`` says, so that their
``.pyc`` files exist in ``.venv`` and every later process reads them instead of compiling from source
(``import torch`` alone: 2.5 s with them, 6.9 s without, on the 2-core VM). A module not listed
here still imports; it is compiled when first imported (and, under ``PYTHONDONTWRITEBYTECODE``, at
every import), which costs time, never correctness.

    python -m harness.warm     # exit 1 (and what failed) when a module cannot be imported

It is also set-up's import check: it runs ``harness.s3prl.compat``'s check first.
"""
from __future__ import annotations

import importlib
import sys
import time

# What DUET's processes import, heaviest first. harness.s3prl.compat.install() runs before the s3prl
# ones (their shims); the rest import their own dependencies (torch, transformers, speechbrain, ...).
WARM_MODULES = (
    "torch", "torch._dynamo", "torch.optim", "torchaudio", "torchaudio.compliance.kaldi",
    "s3prl.hub", "s3prl.downstream.runner", "s3prl.downstream.model",
    "s3prl.downstream.voxceleb1.expert", "s3prl.downstream.emotion.expert", "s3prl.downstream.asr.expert",
    "s3prl.downstream.ctc.expert", "s3prl.downstream.sv_voxceleb1.expert",
    "transformers", "speechbrain", "safetensors.torch", "tensorboardX", "soundfile", "librosa", "editdistance",
    "numpy", "scipy.signal", "scipy.stats", "scipy.linalg", "pandas", "matplotlib", "matplotlib.pyplot",
    "sklearn.linear_model", "sklearn.preprocessing", "yaml", "tqdm",
    "upstream.hub", "upstream.registry", "upstream.importers", "upstream.models.hubert",
    "upstream.models.learn2diss", "upstream.models.jooci", "upstream.models.barlow_twins",
    "harness.cli", "harness.cli.run", "harness.superb.execute", "harness.superb.fastpath", "harness.superb.cell_main",
    "harness.superb.report", "harness.features.cache", "harness.features.store", "harness.corpus.build",
    "pretrain.trainer", "analysis.abx", "analysis.cca", "analysis.probes", "analysis.mi", "analysis.plots",
    "analysis.scorecard",
)


def warm(modules=WARM_MODULES) -> tuple[int, list[str]]:
    """Import ``modules`` with bytecode writing on, after s3prl's shims and the stack check that
    ``python -m harness.s3prl.compat --check`` does (a broken torchaudio or a missing package exits
    with the fix); returns (modules now loaded, names that failed)."""
    from harness.s3prl import compat

    sys.dont_write_bytecode = False
    compat.check()
    compat.install()
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a module that cannot import here is reported, not fatal
            failed.append(f"{name} ({type(e).__name__}: {e})")
    return len(sys.modules), failed


def main() -> int:
    t0 = time.time()
    loaded, failed = warm()
    for f in failed:
        print(f"harness.warm: could not import {f}", file=sys.stderr)
    if failed:
        print("harness.warm: the environment is incomplete; re-run bash scripts/setup.sh", file=sys.stderr)
        return 1
    print(f"harness.warm: torch, torchaudio, s3prl and DUET import OK; bytecode of {loaded} modules "
          f"written or found in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
