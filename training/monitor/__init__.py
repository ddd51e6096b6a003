"""Model monitoring on the training side: baselines from training data, checks over what serving captured.

Serving writes data capture files in SageMaker's format (``services/monitoring/capture.py``); this package
reads them.  ``tripod monitor baseline`` profiles the training table through the model
(:mod:`training.monitor.baseline`): Model Monitor's ``statistics.json`` and ``constraints.json``, extended for
text (length distribution, out-of-vocabulary rate against the model's vocabulary, predicted-label
distribution) and a bounded, seeded reference sample.  ``tripod monitor run`` streams the captured exchanges
file by file into the same profile (:mod:`training.monitor.profile`), evaluates the checks
(:mod:`training.monitor.checks`: schema, completeness, text length, vocabulary, a domain-classifier two-sample
test, predicted-label drift, and accuracy over time against ground truth) and writes Model Monitor's
``constraint_violations.json``, an HTML report and a Prometheus textfile (:mod:`training.monitor.run`).
"""
