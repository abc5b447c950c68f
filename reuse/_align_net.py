"""The torch parts of feature alignment, imported when an alignment runs (importing
``wharf.reuse`` does not load torch)."""

from __future__ import annotations

import numpy as np
import torch


def mlp(source: np.ndarray, out_dim: int, hidden: tuple[int, ...]) -> torch.nn.Module:
    """g: standardisation of the source's columns, then Linear/ReLU layers."""
    mean = torch.from_numpy(source.mean(axis=0)).float()
    std = torch.from_numpy(source.std(axis=0)).float().clamp_min(1e-6)
    layers: list[torch.nn.Module] = [_Standardise(mean, std)]
    width = source.shape[1]
    for h in hidden:
        layers += [torch.nn.Linear(width, int(h)), torch.nn.ReLU()]
        width = int(h)
    layers.append(torch.nn.Linear(width, out_dim))
    return torch.nn.Sequential(*layers)


class _Standardise(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def kernel(a: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    return torch.exp(-gamma * torch.cdist(a, b).pow(2))
