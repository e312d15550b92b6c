from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data not present")
    return SHARED / "data"


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture
def one_torch_thread():
    """The test machine is shared and results do not depend on the thread count: torch runs
    on one thread while a test runs, and gets its setting back afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def evaluated(monkeypatch) -> list[str]:
    """The methods the lfw protocol evaluates, in order."""
    from anonbench.protocols.lfw import LFWVerification

    calls: list[str] = []
    real = LFWVerification.evaluate

    def counting(self, method, store, ctx):
        calls.append(method.name)
        return real(self, method, store, ctx)

    monkeypatch.setattr(LFWVerification, "evaluate", counting)
    return calls
