"""`run_pipeline` with a KFP host: submits the committed YAML with kfp.Client and waits. Only the client is
faked (there is no Kubeflow cluster here); the local path is covered for real by test_daily_pipeline.py."""

from types import SimpleNamespace
from typing import ClassVar

import kfp
import pytest

from cscnn.errors import ConfigError
from kfp_pipelines.runner import compiled_path, run_pipeline


class FakeClient:
    instances: ClassVar[list["FakeClient"]] = []
    final_state = "SUCCEEDED"

    def __init__(self, host=None, **kwargs):
        self.host, self.calls = host, []
        FakeClient.instances.append(self)

    def create_run_from_pipeline_package(self, pipeline_file, arguments=None, run_name=None, **kwargs):
        self.calls.append(("create", pipeline_file, arguments, run_name, kwargs))
        return SimpleNamespace(run_id="run-123")

    def wait_for_run_completion(self, run_id, timeout, **kwargs):
        self.calls.append(("wait", run_id, timeout))
        return SimpleNamespace(state=self.final_state)


@pytest.fixture
def fake_client(monkeypatch):
    FakeClient.instances = []
    FakeClient.final_state = "SUCCEEDED"
    monkeypatch.setattr(kfp, "Client", FakeClient)
    return FakeClient


ARGS = {"day": "2026-01-03", "landing": "/data/landing", "state_dir": "/state", "profile": "small", "overrides": []}


def test_with_a_host_the_compiled_yaml_is_submitted_and_awaited(fake_client, monkeypatch):
    monkeypatch.setenv("KFP_HOST", "http://kfp.example:8888")
    result = run_pipeline("daily", ARGS, timeout_s=600)
    (client,) = fake_client.instances
    assert client.host == "http://kfp.example:8888"
    # caching off for the run, deliberately (every step writes; None would leave it to the backend's default)
    no_cache = {"enable_caching": False}
    assert client.calls[0] == ("create", str(compiled_path("daily")), ARGS, "daily-2026-01-03", no_cache)
    assert client.calls[1] == ("wait", "run-123", 600)
    assert result == {
        "mode": "kfp",
        "pipeline": "daily",
        "host": "http://kfp.example:8888",
        "run_id": "run-123",
        "url": "http://kfp.example:8888/#/runs/details/run-123",
        "state": "SUCCEEDED",
    }


def test_a_failed_remote_run_raises_with_its_state(fake_client):
    fake_client.final_state = "FAILED"
    with pytest.raises(
        RuntimeError, match=r"run-123 .* ended in state FAILED: http://kfp.example:8888/#/runs/details/run-123"
    ):
        run_pipeline("daily", ARGS, host="http://kfp.example:8888")


def test_unknown_pipeline_is_refused_before_anything_runs(fake_client):
    with pytest.raises(ConfigError, match="unknown pipeline 'nightly'"):
        run_pipeline("nightly", ARGS, host="http://kfp.example:8888")
    assert fake_client.instances == []
