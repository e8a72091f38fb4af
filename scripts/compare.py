"""Base vs fine-tuned scores of evaluated runs as one table (make compare RUNS="runs/a runs/b").

python scripts/compare.py runs/demo [runs/other ...]
"""

import sys

from eval.compare import main

if __name__ == "__main__":
    sys.exit(main())
