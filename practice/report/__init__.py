"""Presentation: a run's figures and its HTML page."""
