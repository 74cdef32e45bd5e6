"""The report's figures in their degenerate cases, read back from the drawn figure: Fig. 4's fixed colour scale
with plain ticks when every IoU is equal, Fig. 3's point without a band, a warning on the figure of a run that
cannot support a conclusion."""

import io

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection

from mte.analysis import AnalysisOptions, build_report
from mte.analysis.figures import IOU_SCALE, gain_figure, iou_figure
from tests.test_analysis_report import MRPC, synthetic


def drawn(fig):
    fig.savefig(io.BytesIO(), format="png")  # lays out ticks and offset texts as the saved PNG has them
    return fig


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]


def test_mask_iou_uses_one_fixed_scale_with_plain_ticks_when_every_iou_is_equal():
    seeds = [0, 1, 2]
    equal = pd.DataFrame(np.full((3, 3), 0.9947), index=seeds, columns=seeds)
    varied = pd.DataFrame([[1, 0.5, 0.9], [0.5, 1, 0.7], [0.9, 0.7, 1]], index=seeds, columns=seeds)
    fig = drawn(iou_figure({"base-lt": equal, "random-lt": varied}))
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert [im.get_clim() for im in images] == [IOU_SCALE, IOU_SCALE] == [(0.0, 1.0)] * 2
    bar = fig.axes[-1]
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert bar.yaxis.get_offset_text().get_text() == ""  # no "1e-10+9.947e-1"
    assert "fixed scale 0–1" in bar.get_ylabel()
    assert not any(t.startswith("⚠") for t in texts(fig))


def test_gain_curve_draws_a_point_without_spread_hollow_and_says_so():
    curves = pd.DataFrame({"method": ["baseline"] * 3 + ["random-lt"] * 3, "members": [1, 2, 3] * 2,
                           "metric": "accuracy", "gain": [0, 0, 0, 0.01, 0.02, 0.015],
                           "std": [0.01, 0.008, np.nan, 0.012, 0.01, np.nan]})
    fig = drawn(gain_figure([(curves, "accuracy", "MRPC")], warning="This run cannot support a conclusion"))
    ax = fig.axes[0]
    hollow = [line for line in ax.get_lines() if line.get_markerfacecolor() == "white"]
    assert [list(line.get_xdata()) for line in hollow] == [[3], [3]]
    assert [list(line.get_ydata()) for line in hollow] == [[0.0], [1.5]]
    assert any("m = 3" in t and "no band" in t for t in texts(fig))
    assert "⚠ This run cannot support a conclusion" in texts(fig)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # one per method, over the sizes with a spread


def test_figures_of_a_run_that_cannot_support_a_conclusion_say_so(tmp_path):
    few = build_report(synthetic(MRPC, ["baseline", "random-lt"], range(3)), tmp_path / "few",
                       AnalysisOptions(permutations=20))
    enough = build_report(synthetic(MRPC, ["baseline", "random-lt"], range(20)), tmp_path / "enough",
                          AnalysisOptions(permutations=20))
    assert few.analysis.warnings and not enough.analysis.warnings
    assert set(few.figures) == set(enough.figures) == {"gain_vs_members", "mask_iou", "reliability"}
    # the PNG's text is not readable back, so the figures are redrawn as the report draws them
    from mte.analysis.report import _figure_warning

    assert _figure_warning([few.analysis]) == "This run cannot support a conclusion: see the warnings in the report"
    assert _figure_warning([enough.analysis]) is None
    md = few.markdown.read_text()
    assert "A hollow point has no band" in md and "fixed at 0–1" in md
