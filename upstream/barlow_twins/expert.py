"""s3prl upstream expert: Barlow Twins speech encoder: one encoder trained with the Barlow Twins redundancy-reduction loss.

Thin: everything shared lives in upstream/expert_base.py (keys, -g layer subsets, -k loading,
input checks). This folder has s3prl's shape and can be dropped into s3prl/upstream/.
"""
from upstream.expert_base import DuetUpstreamExpert


class UpstreamExpert(DuetUpstreamExpert):
    MODEL_NAME = "barlow_twins"
