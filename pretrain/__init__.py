"""DUET's compact pre-training: one trainer, losses, k-means pseudo-labels, recipes.

Entry point: ``harness pretrain --recipe NAME`` (see ``pretrain/recipes/__init__.py`` for the
recipe registry and ``pretrain/trainer.py`` for the loop).
"""
