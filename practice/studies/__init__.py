"""The studies that read runs: theory beside a run (compare), the collapse metric, the forecast."""
