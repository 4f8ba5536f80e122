"""ssltheory.theory: the two-layer linear BYOL/SimSiam dynamics of Tian, Chen & Ganguli (2021).

Modules: ``params`` (constants and validation), ``modes`` (decoupled eigen-modes), ``matrix`` (Lemma 1),
``sgd`` (finite-batch SGD), ``integrate`` (solve_ivp / Euler), ``fixed_points``, ``diagnostics``, ``simulate``
(one config at any level), ``plots``, ``io`` (atomic writes), ``outputs`` (the theory commands' files, as
library calls).
"""
