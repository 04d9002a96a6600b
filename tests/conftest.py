import os

import pytest

# Offline, CPU-only, loopback-only defaults for every test process (and the Ray workers they start).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault(
    "TORCH_EXTENSIONS_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache", "torch_extensions")
)


# ---- the scaled-down real-architecture LLaVA-1.5 (matrix.models.llava_fixture), built once per session ----
@pytest.fixture(scope="session")
def llava_hf(tmp_path_factory):
    """The fixture in llava-hf layout (random weights, 336 px CLIP, LLaMA SentencePiece tokenizer)."""
    from matrix.models.llava_fixture import build

    return build(tmp_path_factory.mktemp("llava") / "llava-hf", "hf", seed=0)


@pytest.fixture(scope="session")
def llava_original(tmp_path_factory):
    """The same model (same seed) as original LLaVA saves it, the CLIP tower embedded in its weights."""
    from matrix.models.llava_fixture import build

    return build(tmp_path_factory.mktemp("llava") / "llava-v1.5-original", "original", seed=0)
