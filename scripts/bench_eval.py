"""Evaluation throughput: vLLM against transformers `generate` on the same prompts (make bench-eval).

python scripts/bench_eval.py --data-dir DIR [--limit 500] [--model DIR] [--backends vllm,hf]
"""

from eval.bench import main

if __name__ == "__main__":
    main()
