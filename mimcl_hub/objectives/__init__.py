"""Self-supervised objectives on timm backbones and the InfoAug dual-branch wrapper.

``OBJECTIVES`` maps a name to its :class:`Objective` class; ``build_objective(name, feature_dim,
**kwargs)`` builds one. Losses as pure tensor functions live in :mod:`.losses`, the
``torch.distributed`` helpers in :mod:`.distributed`.
"""

from . import distributed, losses
from .barlow_twins import BarlowTwins
from .base import (MAX_OBJECTIVE_ELEMENTS, OBJECTIVES, RELEASED_WEIGHTS, MomentumObjective, Objective,
                   ObjectiveOutput, build_objective, cosine_schedule, register_objective, unwrap_model)
from .byol import BYOL
from .dino import DINO
from .infoaug import TWIN_MODES, InfoAug, build_infoaug
from .moco import MoCo
from .nnclr import NNCLR
from .simclr import SimCLR
from .simsiam import SimSiam
from .vicreg import VICReg

__all__ = [
    "MAX_OBJECTIVE_ELEMENTS", "OBJECTIVES", "RELEASED_WEIGHTS", "Objective", "MomentumObjective", "ObjectiveOutput", "build_objective", "register_objective",
    "cosine_schedule", "unwrap_model", "InfoAug", "TWIN_MODES", "build_infoaug",
    "SimCLR", "MoCo", "BYOL", "SimSiam", "BarlowTwins", "VICReg", "DINO", "NNCLR", "losses", "distributed",
]
