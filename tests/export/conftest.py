"""Export tests run torch single-threaded.

The suite shares two cores with other work; two OpenMP threads fighting for an oversubscribed
CPU made these tests up to ten times slower, while one thread gives the same numbers.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
