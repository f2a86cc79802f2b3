"""Zero-expert counting and CUDA-graph capture (issue 16): nothing of ours runs on another thread before
vLLM's start-up is over, and start-up forwards are not counted, on the GPU's start-up played on the CPU
(startup_counting_run.py adds vLLM's FULL-graph warm-up step, a forward with attention metadata)."""

import json
import subprocess
import sys

import pytest

from tests import metrics_check

from .conftest import HERE


@pytest.fixture(scope="module")
def observed(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("startup-counting") / "out.json"
    proc = subprocess.run([sys.executable, str(HERE / "startup_counting_run.py"), str(tiny_ckpt), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(out.read_text())


def test_no_publishing_thread_during_start_up(observed):
    runs = observed["startup_runs_with_publisher"]
    assert runs, "the played FULL-graph warm-up ran"
    assert not any(runs), f"our thread existed during start-up forwards: {runs}"
    assert observed["publisher_alive"]


def test_start_up_and_dummy_batches_are_not_counted(observed, tiny_ckpt):
    assert observed["after_startup"] == [0, 0]
    assert observed["after_dummy_batch"] == [0, 0]
    assert observed["after_request"] == list(metrics_check.reference_counts(tiny_ckpt, [observed["forwarded"]]))
