"""knet's benchmarks: each module here that defines `NAME`, `DESCRIPTION` and
`main(argv: list[str]) -> int` is one benchmark, run as `python -m bench NAME [args]` and listed
by `python -m bench`. A benchmark measures knet beside its anchor in the same run and prints a
table with ratios (`bench.common.Table`). Performance is measured here, never asserted in tests.
"""
