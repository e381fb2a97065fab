"""Shared pytest set-up: deterministic seeds, few threads (CI has 2 cores), a headless matplotlib."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Fuzz tests (marker ``fuzz``) run a few examples in ``make test`` and many in ``make fuzz``
# (HYPOTHESIS_PROFILE=fuzz). No deadline: CI's 2 cores make per-example timings noisy.
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state so failures reproduce."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def launch_ranks():
    """Run ``argv`` as N local processes with a torchrun-style environment (gloo on CPU); return their
    outputs once all have exited 0 (a failure shows every rank's output)."""
    import socket
    import subprocess

    def launch(argv: list[str], cwd=None, world_size: int = 2, timeout: float = 240) -> list[str]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = str(sock.getsockname()[1])
        procs = []
        for rank in range(world_size):
            env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
                   "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1",
                   "CUDA_VISIBLE_DEVICES": ""}
            procs.append(subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        outputs = []
        try:
            for proc in procs:
                outputs.append(proc.communicate(timeout=timeout)[0])
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        assert [p.returncode for p in procs] == [0] * world_size, "\n".join(outputs)
        return outputs

    return launch


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models run as fast on one, and on a loaded machine two
    threads spin-wait for each other (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
