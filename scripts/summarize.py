"""Summarize a JSON-lines file of dialogues with the served model (make summarize RECIPE=... FILE=...)."""

import sys

from eval.summarize import main

if __name__ == "__main__":
    sys.exit(main())
