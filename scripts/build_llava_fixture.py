"""Build a scaled-down LLaVA-1.5 with the real architecture (random weights), offline, in seconds.

    python scripts/build_llava_fixture.py OUT [--format hf|original] [--seed N] [--vision-tower-dir DIR]

`--format hf` (default) writes the llava-hf layout, which `LlavaForConditionalGeneration.from_pretrained(OUT)`
and `AutoProcessor.from_pretrained(OUT)` load; `--format original` writes the same model as original LLaVA
saves it (`LlavaLlamaForCausalLM`, like liuhaotian/llava-v1.5-7b), which a spec's `{family: llava, path: OUT}`
converts once. Same seed, same files. See `matrix/models/llava_fixture.py`.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matrix.models.llava_fixture import main  # noqa: E402

if __name__ == "__main__":
    main()
