"""Random-weight SAM2 checkpoints for tests.

A checkpoint built here has the exact keys and shapes of a released one for the same
config (``{"model": state_dict}``), so it exercises the real loading path, prompting,
propagation and mask assembly; its weights are random (seeded), so its masks say
nothing about accuracy. No download: the config ships with the ``sam2`` package.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def build_random_sam2_checkpoint(path: Path, config_name: str = DEFAULT_CONFIG, seed: int = 0) -> Path:
    """Build ``config_name`` with random (seeded) weights and save it as a SAM2 checkpoint at ``path``."""
    import torch
    from sam2.build_sam import build_sam2

    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = build_sam2(config_name, ckpt_path=None, device="cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path
