"""Training runs in .venv/train, evaluation in .venv/eval, with different transformers
builds. The prompt token ids must still be identical: compute them in both and compare."""

import json
import subprocess

import pytest
from transformers import AutoTokenizer

from datasets_fmt.prompts import FORMATS, get_format
from datasets_fmt.sources import load_examples
from tests.conftest import DEMO_DATA, REPO
from tests.eval.conftest import TRAIN_PY

SNIPPET = """
import json, sys
from transformers import AutoTokenizer
from datasets_fmt.prompts import get_format
from datasets_fmt.sources import load_examples
tok = AutoTokenizer.from_pretrained(sys.argv[1])
examples = load_examples("dialogsum", "test", sys.argv[2]).examples[:20]
out = {}
for name in sys.argv[3].split(","):
    fmt = get_format(name, tok)
    out[name] = [fmt.encode_train(ex, 256).input_ids for ex in examples]
print(json.dumps(out))
"""


@pytest.mark.parametrize("model", ["smollm2_dir", "llama3_tokenizer_dir"])
def test_prompt_ids_identical_in_training_and_evaluation_envs(model, request):
    if not TRAIN_PY.exists():
        pytest.skip("the training environment .venv/train is missing: run `make env-train`")
    model_dir = request.getfixturevalue(model)
    names = [n for n in FORMATS if n != "seq2seq"]
    proc = subprocess.run(
        [str(TRAIN_PY), "-c", SNIPPET, str(model_dir), str(DEMO_DATA), ",".join(names)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    from_train = json.loads(proc.stdout.strip().splitlines()[-1])
    tok = AutoTokenizer.from_pretrained(model_dir)
    examples = load_examples("dialogsum", "test", DEMO_DATA).examples[:20]
    for name in names:
        fmt = get_format(name, tok)
        assert from_train[name] == [fmt.encode_train(ex, 256).input_ids for ex in examples], name
