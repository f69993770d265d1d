"""Alias of :mod:`zp_ref.bridges.torch` (the PyTorch adapter), kept importable."""
from .bridges.torch import (CurriculumBatchSampler, EpochLoader, HybridBatchSampler,
                            ImportanceWeightedSampler, as_tensor, evaluate_q_fn,
                            sharded_total, to_numpy)
from .bridges.torch_model import ModelDrivenSampler, PoolDataset
from .bridges.torch_poles import PoleDistance

__all__ = ["as_tensor", "to_numpy", "evaluate_q_fn", "sharded_total",
           "ImportanceWeightedSampler", "HybridBatchSampler", "CurriculumBatchSampler",
           "EpochLoader", "ModelDrivenSampler", "PoolDataset", "PoleDistance"]
