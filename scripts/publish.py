"""Write an evaluation's ids and generated texts, without the dataset's text (make publish).

python scripts/publish.py runs/<recipe>/eval results/predictions/<name>.jsonl
"""

import sys

from eval.publish import main

if __name__ == "__main__":
    sys.exit(main())
