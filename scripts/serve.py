"""Serve base + adapter through vLLM's OpenAI-compatible server (make serve RECIPE=...)."""

import sys

from eval.serve import main

if __name__ == "__main__":
    sys.exit(main())
