"""The repository's benchmark script: every benchmark of :mod:`ttamer.benchmarks`, ratios
measured in one run on this machine (the book's Performance chapter calls the same functions).

    python benchmarks/run.py --quick          # small sizes, a minute or two
    python benchmarks/run.py                  # the full profile (traces of 10^3 to 10^6 examples)
    python benchmarks/run.py --json results.json
    python benchmarks/run.py --quick --only serving --device cuda   # the serving runtime on a GPU
"""

import sys

from ttamer.benchmarks import main

if __name__ == "__main__":
    sys.exit(main())
