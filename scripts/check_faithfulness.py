"""Facts that published summaries state and their dialogues do not (the report's faithfulness check).

python scripts/check_faithfulness.py results/predictions/*.jsonl --data-dir ~/data [--corpus dialogsum --split test]
"""

import sys

from eval.publish import faithfulness_main

if __name__ == "__main__":
    sys.exit(faithfulness_main())
