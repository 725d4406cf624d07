"""The shared shape check (burstjdd/checks.py): layouts, named sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from burstjdd.checks import check_same_shape, check_shape
from burstjdd.errors import BurstFormatError, ConfigError, DataError

BURST = ("B", "N", "4", "H", "W")


def test_names_bind_sizes_and_digits_are_exact():
    assert check_shape(torch.zeros(2, 3, 4, 8, 6), BURST, what="frames") == {
        "B": 2, "N": 3, "H": 8, "W": 6}
    with pytest.raises(BurstFormatError) as info:
        check_shape(torch.zeros(2, 3, 3, 8, 6), BURST, what="frames")
    assert str(info.value) == "frames must have shape (B, N, 4, H, W), got (2, 3, 3, 8, 6)"


def test_rank_must_match():
    for shape in [(3, 4, 8, 6), (1, 2, 3, 4, 8, 6), ()]:
        with pytest.raises(BurstFormatError, match=r"\(B, N, 4, H, W\), got "):
            check_shape(torch.zeros(shape), BURST, what="frames")


def test_a_name_used_twice_must_match():
    assert check_shape(torch.zeros(3, 3), ("N", "N"), what="m") == {"N": 3}
    with pytest.raises(BurstFormatError, match=r"m must have shape \(N, N\), got \(3, 4\)"):
        check_shape(torch.zeros(3, 4), ("N", "N"), what="m")


def test_sizes_carry_names_across_calls():
    frames = check_shape(torch.zeros(1, 3, 4, 16, 16), BURST, what="frames")
    assert check_shape(torch.zeros(1, 2), ("B", "2"), what="origins", sizes=frames) == frames
    with pytest.raises(BurstFormatError) as info:
        check_shape(torch.zeros(2, 2), ("B", "2"), what="origins", sizes={"B": 1})
    assert str(info.value) == "origins must have shape (B=1, 2), got (2, 2)"
    # names the layout does not use pass through unchecked; the input dict is not changed
    known = {"B": 1, "K": 5}
    assert check_shape(torch.zeros(1, 4), ("B", "C"), what="x", sizes=known) == {
        "B": 1, "K": 5, "C": 4}
    assert known == {"B": 1, "K": 5}


@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 5, 7, 9), (2, 1, 3, 5, 7)])
def test_star_takes_any_number_of_leading_dims(shape):
    assert check_shape(torch.zeros(shape), ("*", "H", "W"), what="x") == {
        "H": shape[-2], "W": shape[-1]}
    assert check_shape(torch.zeros(5, 7), ("*", "H", "W"), what="x") == {"H": 5, "W": 7}


def test_star_in_the_middle():
    assert check_shape(torch.zeros(2, 5), ("B", "*", "M"), what="v") == {"B": 2, "M": 5}
    assert check_shape(torch.zeros(2, 3, 4, 5), ("B", "*", "M"), what="v") == {"B": 2, "M": 5}
    with pytest.raises(BurstFormatError, match=r"v must have shape \(B, \.\.\., M\), got \(2,\)"):
        check_shape(torch.zeros(2), ("B", "*", "M"), what="v")


def test_exact_sizes_after_a_star():
    check_shape(torch.zeros(2, 3, 3), ("*", "3", "3"), what="ccm")
    with pytest.raises(BurstFormatError, match=r"ccm must have shape \(\.\.\., 3, 3\), got \(3,\)"):
        check_shape(torch.zeros(3), ("*", "3", "3"), what="ccm")


def test_multiples():
    even = {"H": 2, "W": 2}
    check_shape(torch.zeros(4, 6), ("*", "H", "W"), what="pack: raw", multiple_of=even)
    with pytest.raises(BurstFormatError) as info:
        check_shape(torch.zeros(5, 6), ("*", "H", "W"), what="pack: raw", multiple_of=even)
    assert str(info.value) == ("pack: raw must have shape (..., H, W) with H, W multiples of 2, "
                               "got (5, 6)")
    with pytest.raises(BurstFormatError, match=r"with H a multiple of 4; W a multiple of 2"):
        check_shape(torch.zeros(8, 3), ("H", "W"), what="x", multiple_of={"H": 4, "W": 2})


def test_error_class_is_the_callers():
    with pytest.raises(ConfigError, match="IspParams.ccm must have shape"):
        check_shape(torch.zeros(3, 4), ("3", "3"), what="IspParams.ccm", error=ConfigError)
    with pytest.raises(DataError):
        check_shape(torch.zeros(4, 8, 8), ("3", "H", "W"), what="image", error=DataError)


def test_numpy_arrays_have_shapes_too():
    assert check_shape(np.zeros((8, 6, 3)), ("H", "W", "3"), what="gt") == {"H": 8, "W": 6}


def test_bad_layouts_are_programming_errors():
    with pytest.raises(ValueError, match="at most one"):
        check_shape(torch.zeros(2, 3), ("*", "H", "*"), what="x")
    with pytest.raises(ValueError, match="not in"):
        check_shape(torch.zeros(2, 3), ("H", "W"), what="x", multiple_of={"K": 2})


def test_same_shape():
    a = torch.zeros(1, 3, 4, 16, 16)
    check_same_shape(torch.ones(1, 3, 4, 16, 16), a, what="noise", like_what="frames")
    with pytest.raises(BurstFormatError) as info:
        check_same_shape(a[:, :2], a, what="noise", like_what="frames")
    assert str(info.value) == ("noise (1, 2, 4, 16, 16) differs in shape from frames "
                               "(1, 3, 4, 16, 16)")
    with pytest.raises(ConfigError):
        check_same_shape(torch.zeros(3), torch.zeros(3, 1), what="a", like_what="b",
                         error=ConfigError)
