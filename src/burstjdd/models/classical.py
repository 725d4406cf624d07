"""The ``classical`` model: the residual base of ``compact`` alone, with no learned part but
demosaicnet. The fast path for big images on a CPU, and the default where no learned model
ships (``burstjdd restore --model classical``).

Per restore tile: hard block matching on bicubic ×1/4 raw (the ``no_e2e`` coarse alignment, no
DSNet), then :func:`~burstjdd.models.jddb.residual_base` (HDR+ tile alignment, pairwise Wiener
merge, GAT + non-local means, pretrained demosaicnet).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from . import demosaicnet
from .jddb import ModelConfig, TwoStageJDDB, residual_base
from .registry import CLASSICAL  # its name, registered in models.registry (not learned)

__all__ = ["CLASSICAL", "ClassicalJDDB", "build_classical", "is_classical"]


def is_classical(name_or_path: object) -> bool:
    """Whether a ``--model`` value names the classical pipeline (a folder called "classical"
    is a weights folder, not this)."""
    return str(name_or_path) == CLASSICAL and not Path(str(name_or_path)).is_dir()


class ClassicalJDDB(nn.Module):
    """The interface :func:`burstjdd.restore.restore_burst` needs (``config``, ``ca_features``,
    ``coarse``, ``reconstruct``) over the classical pipeline; ``base_demosaic`` starts
    untrained (no I/O here): :func:`build_classical` loads the bundled weights."""

    def __init__(self) -> None:
        super().__init__()
        # nf sizes restore's memory budget per tile: the base needs far less than any network
        self.config = ModelConfig(nf=8, deformable_groups=1, ca="bicubic", ra=False,
                                  residual=True)
        self.dsnet = None
        self.base_demosaic = demosaicnet.DemosaicNet().requires_grad_(False)

    # The coarse alignment is TwoStageJDDB's own with ca="bicubic" (it reads only config, dsnet).
    ca_features = TwoStageJDDB.ca_features
    coarse = TwoStageJDDB.coarse

    def reconstruct(self, frames: Tensor, noise: Tensor, ref: int, interp: bool = False
                    ) -> tuple[Tensor, None]:
        """frames/noise (B, N, 4, h, w) aligned packed patches → ((B, 3, 2h, 2w), None)."""
        return residual_base(frames, noise, ref, False, self.base_demosaic), None


def build_classical() -> ClassicalJDDB:
    """The classical model with the bundled pretrained demosaicnet, in eval mode."""
    model = ClassicalJDDB()
    demosaicnet.load_pretrained(model.base_demosaic)
    return model.eval()
