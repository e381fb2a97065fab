"""A rank that stalls, dies or never starts ends the others within ``ddp_timeout_s``, with the rank named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

SCRIPT = '''
import os, sys, time
from mie.cli import error_line
from mie.training.distributed import all_reduce_mean, guard_collectives, init_distributed

mode = sys.argv[2]
try:
    info = init_distributed(timeout_s=float(sys.argv[1]))

    @guard_collectives
    def work():
        for _ in range(3):
            all_reduce_mean({"x": 1.0})
        if info.rank == 1 and mode == "stall":
            time.sleep(120)
        if info.rank == 1 and mode == "die":
            os._exit(3)
        all_reduce_mean({"x": 2.0})

    work()
    print("ok")
except Exception as exc:
    print("ERROR " + error_line(exc))
    sys.exit(1)
'''


def _launch(tmp_path, mode: str, ranks: list[int], timeout_s: float = 3.0) -> tuple[list[subprocess.Popen], float]:
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    procs = []
    for rank in ranks:
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, str(script), str(timeout_s), mode], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs, time.monotonic()


@pytest.mark.parametrize("mode, ranks, message", [
    ("stall", [0, 1], "ERROR rank 0 of 2: a collective timed out: another rank stalled or failed ("),
    ("die", [0, 1], "ERROR rank 0 of 2: lost contact with another rank: it failed or was killed ("),
    ("absent", [0], "ERROR rank 0: could not join the process group of 2 within 3 s ("),
])
def test_a_failed_or_stalled_rank_stops_the_others_within_the_timeout(tmp_path, mode, ranks, message):
    procs, start = _launch(tmp_path, mode, ranks)
    try:
        out, _ = procs[0].communicate(timeout=60)
        seconds = time.monotonic() - start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert procs[0].returncode == 1, out
    lines = out.strip().splitlines()
    assert lines[-1].startswith(message), out
    assert "Traceback" not in out and " logs" in lines[-1]  # one line: the rank, what, the fix
    assert seconds < 40  # the timeout (3 s) plus start-up, not torch's default 30 minutes
