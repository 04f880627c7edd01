"""Whole models (hubert_compact, learn2diss, jooci, barlow_twins); see upstream/registry.py."""
