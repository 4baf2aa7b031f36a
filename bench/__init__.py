"""zhida benchmarks: `make bench` runs them all and writes JSON under bench/results/.

Every figure is measured against a baseline in the same run (a ratio), never
as an absolute threshold in a unit test: the machine's speed cancels out.
"""
