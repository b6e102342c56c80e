"""rnnbench harness: backend registry, cases, measurement, results and reports.

Data flow: a suite file (``harness/suites/*.toml``) expands into cases; each case is measured into
tidy rows appended to ``results.csv``; reports are pure functions of a results directory.
"""
