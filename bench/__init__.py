"""framecast's benchmarks: ``python -m bench [transport|latency|capacity] [--quick] [--frames N]``.

Each group prints a table of figures and ratios measured in one run and writes it, with the
environment it ran in, to ``bench/results/<group>.json``. Benchmarks report; they never assert
timings. docs/performance.md holds the latest figures and what they mean.
"""
