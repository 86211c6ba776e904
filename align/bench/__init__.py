"""The benchmark runner: a matrix of encoders x aligners x datasets x tasks x seeds, and its report.

- :mod:`align.bench.plan`: a config becomes typed specs (what decides each fit and result, their
  identities and paths) and work units.
- :mod:`align.bench.execute`: units are fitted and scored (features, fits, sweeps, tasks, executors).
- :mod:`align.bench.record`: results, their per-item outputs and the ledger, written and read back verified.
- :mod:`align.bench.report`: the leaderboard with intervals, the HTML report, sweeps and curves.
- :mod:`align.bench.runner`: the three steps in order (:func:`~align.bench.runner.run_benchmark`).
"""
