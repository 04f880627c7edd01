"""Cosine distillation (JOOCI's "other" loss): L = mean_b (1 - cos(student_b, teacher_b)).

Only positive pairs (BYOL-style); the teacher is detached.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CosineDistillation(nn.Module):
    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """student, teacher: (B, D) with the same D."""
        if student.shape != teacher.shape:
            raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} embeddings differ in shape; "
                             "set the student's projection size to the teacher's embedding size")
        return (1.0 - F.cosine_similarity(student.float(), teacher.detach().float(), dim=-1)).mean()
