"""Shared fixtures of the unit tests."""

from __future__ import annotations

import pytest

from ocirt.config import validate


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real cache (/var/cache/ocirt for root)."""
    monkeypatch.setenv("OCIRT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ocirt-cache"))
    monkeypatch.setattr(validate, "_runner", None)
