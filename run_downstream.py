#!/usr/bin/env python
"""s3prl's ``run_downstream.py``, with DUET's upstreams registered and this stack's fixes applied.

Takes exactly s3prl 0.4.18's flags (``python run_downstream.py -h``) and runs s3prl's own
runner, e.g. (SID on a generated corpus, then test with the dev-best checkpoint)::

    python run_downstream.py -m train -u jooci -d voxceleb1 -c downstream_configs/mini/sid.yaml \\
        -o "config.downstream_expert.datarc.file_path=/work/corpora/small/VoxCeleb1,,config.downstream_expert.datarc.meta_data=/work/corpora/small/VoxCeleb1/iden_split.txt" \\
        -p runs/sid-jooci
    python run_downstream.py -m evaluate -e runs/sid-jooci/dev-best.ckpt

DUET names (``learn2diss``, ``jooci``, ``barlow_twins``, ``hubert_compact``) sit next to s3prl's
built-ins (``fbank``, ``mfcc``, ...). See README "s3prl bridge" and harness/superb/bridge.py. Under
``torchrun`` without s3prl's ``--local_rank`` it refuses (harness/s3prl/distributed_guard.py).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from anywhere, installed or not

from harness.s3prl.distributed_guard import refusal  # noqa: E402

if __name__ == "__main__":
    # `torchrun run_downstream.py` would run N independent copies into one folder: refuse (see the guard)
    msg = refusal(sys.argv[1:], os.environ)
    if msg:
        print(msg, file=sys.stderr)
        sys.exit(2)
    from harness.superb.bridge import main

    sys.exit(main())
