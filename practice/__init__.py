"""ssltheory.practice: real ResNet training (BYOL, SimSiam, DirectPred) measured like the theory. Coming next."""
