"""Objectives: what a method minimises, one file per family (unigrad.md A1-A3).

- :mod:`.base`: :class:`Views` (what a step hands an objective), :class:`Objective`, the detached surrogate;
- :mod:`.regression`: BYOL / SimSiam, the prediction regresses the other view's target;
- :mod:`.contrastive`: MoCo (queue of momentum keys) and SimCLR (the batch's other views), InfoNCE;
- :mod:`.asymmetric`: BYOL's gradient with a DirectPred predictor (adaptive balance) and UniGrad;
- :mod:`.decorrelation`: Barlow Twins and VICReg.

Each offers its loss form (autograd through the method's loss) and, where the paper gives one, its gradient form
(the detached surrogate <g.detach(), u> of :func:`.base.surrogate`).
"""

from ssltheory.practice.methods.objectives.base import Objective, Views, surrogate, unit
from ssltheory.practice.methods.objectives.regression import Regression, l2, negative_cosine, symmetric_loss

__all__ = ["Objective", "Views", "surrogate", "unit", "Regression", "l2", "negative_cosine", "symmetric_loss"]
# The families (contrastive, asymmetric, decorrelation) are imported where a method builds its objective.
