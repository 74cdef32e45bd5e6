"""The live view as a Ray Tune callback (Tune calls the view's `on_trial_*` hooks in the driver); kept apart from
`sweeps.live` so that a sweep without Ray (`--executor local`) never imports Ray."""

from __future__ import annotations

from ray import tune

from sweeps.live import SweepView


class TuneSweepView(SweepView, tune.Callback):
    pass
