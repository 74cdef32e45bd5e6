"""Tracking: what a sweep records in MLflow and how the report stage reads it back.

Layout and artifact schema: see `tracking/README.md`. The science core never imports this package; sweeps
(the driver and its trials) write through it, the analysis stage reads through `tracking.load`.
"""
