"""Test hook for tests/system/test_faults.py: kill -9 a daily run at a chosen point.

Python imports `sitecustomize` at start-up from the first folder of its path that has one; tests put this folder
on PYTHONPATH of a `cscnn daily run` they start in its own process group, and kfp.local's step subprocesses
inherit it. With CSCNN_TEST_CRASH=<point>, the process that reaches the point SIGKILLs its whole process group
(the run and its steps, as `kill -9` of the run would), after the named function returned:

    version   copying a day into the data registry (its impressions and catalogue copied, nothing committed)
    train     the first epoch of training
    register  MLflow created the model version (inside the candidate's run)
    package   the packaged service answered /readyz (the smoke check's `bentoml serve` is up)

Nothing here runs without the variable; production code knows nothing of it.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import signal
import sys

POINTS = {  # point -> (module, function wrapped in it)
    "version": ("cscnn.tools.versioning.data_registry", "_copy_catalogue"),
    "train": ("cscnn.training.train", "run_epoch"),
    "register": ("mlflow.tracking._model_registry.fluent", "_register_model"),
    "package": ("cscnn.tools.packaging", "wait_ready"),
}


def _crash_after(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        os.killpg(os.getpgrp(), signal.SIGKILL)
        return result

    return wrapper


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, attribute: str) -> None:
        self.module, self.attribute = module, attribute

    def find_spec(self, name, path=None, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)  # find the real spec, then wrap its loader
        spec = importlib.util.find_spec(name)
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            setattr(module, self.attribute, _crash_after(getattr(module, self.attribute)))

        spec.loader.exec_module = exec_module
        return spec


_point = os.environ.get("CSCNN_TEST_CRASH")
if _point:
    sys.meta_path.insert(0, _PatchOnImport(*POINTS[_point]))
