"""The server processes' collector settings (mmsite/gc_tuning.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmsite.gc_tuning import tune_gc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_thresholds_from_the_settings_are_applied_and_the_heap_is_frozen(settings, restore_gc):
    settings.GC_THRESHOLDS = (40_000, 10, 50)
    assert tune_gc() is True
    assert gc.get_threshold() == (40_000, 10, 50)
    assert gc.get_freeze_count() > 1000  # the loaded application is out of the collector's scans


def test_without_thresholds_python_keeps_its_defaults(settings, restore_gc):
    settings.GC_THRESHOLDS = ()
    before = gc.get_threshold()
    assert tune_gc() is False
    assert gc.get_threshold() == before


def test_the_production_asgi_application_starts_with_the_tuned_collector():
    """As daphne loads it: production settings, the URLs and views loaded before the heap is frozen."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mmsite.settings.production",
        "SECRET_KEY": "test-" + "x" * 60,
        "ALLOWED_HOSTS": "localhost",
    }
    code = (
        "import gc, sys; import mmsite.asgi; "
        "print(gc.get_threshold(), gc.get_freeze_count() > 10000, 'exchanges.api.views_trading' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "(50000, 20, 100) True True"
