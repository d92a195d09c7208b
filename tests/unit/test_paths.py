"""ocirt.paths gives what os.path gives (it exists so that ``state`` need not import os)."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocirt import paths

SAMPLES = ["", "/", "//", "///", "////a", "//a//b/", "a", "a/", "./a", "../a", "a/../..",
           "/../a", "/a/./b/../../c/", "a/b/../../../c", "/run/ocirt", "run/./ocirt/",
           "..", ".", "./", "/a/..", "//../a/b/..", "a//b///c"]
PIECES = st.lists(st.sampled_from(["", "/", ".", "..", "a", "bc", "//", "a/", "/b"]),
                  max_size=8).map("".join)


@pytest.mark.parametrize("path", SAMPLES)
def test_normpath_and_abspath_samples(path: str) -> None:
    assert paths.normpath(path) == posixpath.normpath(path)
    assert paths.abspath(path) == os.path.abspath(path)


@given(PIECES)
def test_normpath_and_abspath(path: str) -> None:
    assert paths.normpath(path) == posixpath.normpath(path)
    assert paths.abspath(path) == os.path.abspath(path)


@given(PIECES, st.lists(PIECES, max_size=4))
def test_join(path: str, names: list[str]) -> None:
    assert paths.join(path, *names) == posixpath.join(path, *names)
