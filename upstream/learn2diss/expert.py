"""s3prl upstream expert: Learn2Diss: frozen HuBERT-style backbone + frame-level encoder (content) and ECAPA-TDNN utterance encoder (other), MI minimised with CLUB.

Thin: everything shared lives in upstream/expert_base.py (keys, -g layer subsets, -k loading,
input checks). This folder has s3prl's shape and can be dropped into s3prl/upstream/.
"""
from upstream.expert_base import DuetUpstreamExpert


class UpstreamExpert(DuetUpstreamExpert):
    MODEL_NAME = "learn2diss"
