"""Merge a run's adapter into its base model and verify the merge (make merge RECIPE=...).

python scripts/merge.py smollm2-dialogsum [--run-dir DIR] [--out DIR]
"""

import sys

from training.merge import main

if __name__ == "__main__":
    sys.exit(main())
