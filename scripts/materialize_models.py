"""Build the offline models (SmolLM2-135M-Instruct, the Llama-3 tokenizer) once: make model.

python scripts/materialize_models.py [--models-dir DIR]
"""

from training.models import main

if __name__ == "__main__":
    main()
