"""One runnable recipe per result of the DirectPred paper: ``ssltheory experiment NAME --scale smoke|paper``."""
