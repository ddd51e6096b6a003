"""Explanations served from the model directory alone: which words (and values) pushed a record's answer.

Two methods, chosen per model (``docs/explain.md``):

- ``linear`` (:mod:`.linear`): exact, for models exported with ``explainer.onnx`` (the linear family): each
  feature's contribution to each class's margin against the all-absent baseline, from one small graph run
  on the features the transformer already computed — nearly free.
- ``sampling`` (:mod:`.sampling`): model-agnostic, for every other model: Shapley values over the record's
  words (and its other fields) estimated by antithetic permutation sampling through the model's own stages,
  within a per-record evaluation budget, seeded.

Both answer :class:`~.explanation.Explanation` objects whose contributions point back at the characters of the
request (:mod:`.tokens`).  The pipeline runs them (``Pipeline.explain``); nothing here imports a training
library.
"""
