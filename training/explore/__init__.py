"""The data-exploration report: what a table holds, how its target is spread, and which columns leak it.

Each section is a small function over a DataFrame that returns data (a table or a dict) and draws its figures
separately, so the HTML report (:func:`explore` → :func:`render_exploration_html`) and the notebook
(:func:`~training.explore.notebook.build_notebook`, one cell per section) run the same code.  Cheap statistics
use every row; the costly parts (n-grams, Isolation Forest, per-column models) use a seeded random sample of
``sample_rows`` rows.

Modules: :mod:`~training.explore.statistics` (profile, target, duplicates, text, correlations, anomalies),
:mod:`~training.explore.leakage` (prediction power per column, leak and data-quality warnings),
:mod:`~training.explore.plots` (the figures), :mod:`~training.explore.report` (run every section, HTML, files),
:mod:`~training.explore.notebook` (the notebook).  ``tripod explore`` needs only the names below.
"""

from training.explore.notebook import execute_notebook
from training.explore.report import Exploration, explore, write_exploration
from training.explore.statistics import ExploreSettings

__all__ = ["Exploration", "ExploreSettings", "execute_notebook", "explore", "write_exploration"]
