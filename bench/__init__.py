"""banktasks benchmark suite (`make bench`, i.e. `python -m bench`).

Every comparison is a ratio of two figures measured in the same run, each figure
the median of at least three repetitions (min and max shown). See bench/README.md.
"""
