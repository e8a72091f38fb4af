"""Save a model of a real config with RANDOM weights, for speed and memory benchmarks.

python scripts/make_random_model.py --config-dir .cache/models/llama3-tokenizer --out .cache/models/llama3-8b-random
"""

from training.random_model import main

if __name__ == "__main__":
    main()
