"""s3prl upstream expert: JOOCI: shared CNN, content encoder (masked prediction) and other encoder (Res2Net, split-and-append) in one forward pass.

Thin: everything shared lives in upstream/expert_base.py (keys, -g layer subsets, -k loading,
input checks). This folder has s3prl's shape and can be dropped into s3prl/upstream/.
"""
from upstream.expert_base import DuetUpstreamExpert


class UpstreamExpert(DuetUpstreamExpert):
    MODEL_NAME = "jooci"
