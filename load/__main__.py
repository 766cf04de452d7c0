"""`python -m load`: the benchmarks (filled in by the load issue)."""

import sys

print("load: no benchmarks yet; see the load issue", file=sys.stderr)
