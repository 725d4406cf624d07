"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import skimage.data
import torch
from PIL import Image


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of tiny tensors: intra-op threads only add synchronisation
    there (badly so on a shared machine). Restored afterwards for the rest of the suite."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    """Three 80x80 crops of scikit-image photos (big enough for 48 px frames + motion)."""
    root = tmp_path_factory.mktemp("stills")
    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        Image.fromarray(getattr(skimage.data, name)()[100:180, 100:180]).save(root / f"{i}.png")
    return root
