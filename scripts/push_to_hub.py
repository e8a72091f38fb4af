"""Publish a finished run (adapter or merged model, card, scores) to the Hugging Face Hub.

HF_TOKEN=... python scripts/push_to_hub.py smollm2-dialogsum --repo-id me/smollm2-dialogsum [--merged] [--public]
"""

import sys

from eval.hub import main

if __name__ == "__main__":
    sys.exit(main())
