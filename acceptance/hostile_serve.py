"""Acceptance: `mie serve` can be driven only by its own page, abandoned work blocks no one, uploads stay under
2 GB, and bad inputs get our own one-line messages (issue 26, findings 4-6). It trains a tiny clip run and a
tiny lm run (a context of 1,100 tokens, so a reply can be 512 tokens long), starts `mie serve` over each on a
free port, and checks, as a hostile or careless client would:

* a foreign Host, a cross-origin POST (text/plain and form), a non-JSON body and a CORS preflight are refused,
  and no answer names where the run lies;
* `/api/caption?k=²`, a 5,000-digit k, a lone surrogate and 60,000 nested brackets get our one-line 400s;
  a client that hangs up mid-upload is not logged as a failure;
* with three 512-token replies running and waiting, a fourth chat is 503 with Retry-After; once the three
  clients hang up, the next 3-token chat streams its first token within 5 s; a 24 KB message of rare CJK
  characters is refused within 5 s;
* 80 concurrent uploads of a 49 KB all-zero 4096x4096 PNG keep the server's peak RSS (VmHWM) under 2 GB.

Prints one row per case; exits 1 on any failure. Not part of `make test` (about a minute).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_inputs import TINY  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = {**TINY, "project_name": "hostile_serve"}
TEXT = ("the cat sat on the mat. a dog ran in the park. hello there, how are you today? we walked along the river "
        "and talked about the weather, the books we read and the people we met. ") * 200
PYTHON_TEXT = ("invalid literal", "Exceeds the limit", "codec", "surrogates not allowed", "RecursionError",
               "bug in mie", "Traceback", "Expecting")
PEAK_LIMIT = 2 << 30
rows: list[bool] = []


def row(name: str, ok: bool, seconds: float, detail: str) -> None:
    """Print one result row and remember whether it passed."""
    rows.append(ok)
    print(f"{name:52s} {'ok ' if ok else 'FAIL'} {seconds:7.2f} s  {detail[:150]}", flush=True)


def mie(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m mie ARGV`` from the repository, capturing its output."""
    return subprocess.run([sys.executable, "-m", "mie", *argv], capture_output=True, text=True, cwd=REPO, **kwargs)


def train_runs(root: Path) -> tuple[Path, Path]:
    """A tiny clip run and a tiny lm run (from configs/lm_tiny.yaml, a few KB of text, ~15 s)."""
    clip = {**TINY_CLIP, "output_dir": str(root / "clip"), "data": {**TINY_CLIP["data"], "path": str(root / "shapes")}}
    (root / "clip.yaml").write_text(yaml.safe_dump(clip), encoding="utf-8")
    (root / "doc.txt").write_text(TEXT, encoding="utf-8")
    lm = yaml.safe_load((REPO / "configs" / "lm_tiny.yaml").read_text(encoding="utf-8"))
    lm["data"].update({"files": [str(root / "doc.txt")], "workers": 1, "blocks_per_epoch": 32, "max_val_blocks": 8})
    lm["data"].pop("fallback_files", None)
    # Wide enough that a 512-token reply takes seconds (an abandoned one would then visibly block the next),
    # with room in its context for such a reply.
    lm["model"].update({"dim": 384, "n_layers": 6, "n_heads": 6, "max_seq_len": 1100})
    lm["tokenizer"]["vocab_size"] = 300
    lm["schedule"]["warmup_steps"] = 1
    lm.update({"epochs": 1, "max_minutes": 0.3, "output_dir": str(root / "lm"), "sample": {"max_new_tokens": 4}})
    (root / "lm.yaml").write_text(yaml.safe_dump(lm), encoding="utf-8")
    for name in ("clip", "lm"):
        done = mie("train", str(root / f"{name}.yaml"), "-q")
        assert done.returncode == 0, f"training the tiny {name} run failed: {done.stderr[-500:]}"
    return root / "clip", root / "lm"


class Server:
    """`mie serve RUN` on a free port of 127.0.0.1, in a child process; its stderr kept in a file."""

    def __init__(self, run: Path, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.run, self.log = run, log
        self.proc = subprocess.Popen([sys.executable, "-m", "mie", "serve", str(run), "--port", str(self.port),
                                      "--safety-methods", "rules"], cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=log.open("w"), env={**os.environ, "OMP_NUM_THREADS": "2"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/api/status")[2].get("ready"):
                    status = self.request("GET", "/api/status")[2]
                    if status.get("safety_ready"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"mie serve {run} did not come up: {log.read_text()[-500:]}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30) -> tuple[int, dict[str, str], dict]:
        """``(status, headers, JSON body or {})`` of one request (Host 127.0.0.1:PORT unless given)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            headers = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            if body is not None:
                headers.setdefault("Content-Length", str(len(body)))
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            try:
                parsed = json.loads(data) if data else {}
            except ValueError:
                parsed = {"text": data.decode("utf-8", "replace")}
            return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
        finally:
            conn.close()

    def peak_bytes(self) -> int:
        """The server's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        """End the server (terminate, then kill after 10 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def timed(fn: Callable[[], tuple[bool, str]]) -> tuple[bool, float, str]:
    """``(ok, seconds, detail)`` of one check; an exception is a failed check."""
    started = time.monotonic()
    try:
        ok, detail = fn()
    except Exception as exc:  # noqa: BLE001 - a crashed check is a failed row, with its reason
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return ok, time.monotonic() - started, detail


def our_400(response: tuple[int, dict, dict], start: str) -> tuple[bool, str]:
    """Whether a response is a 400 whose one-line message starts with ``start`` and holds no Python text."""
    status, _, body = response
    error = str(body.get("error", body))
    ok = status == 400 and error.startswith(start) and "\n" not in error and not any(p in error for p in PYTHON_TEXT)
    return ok, f"{status} {error}"


def no_cors(headers: dict[str, str]) -> bool:
    """Whether no ``Access-Control-*`` header was sent."""
    return not any(k.startswith("access-control-") for k in headers)


def clip_cases(server: Server, run: Path) -> None:
    """Finding 4 and 6 on the clip server, then the 80 concurrent uploads."""
    query = json.dumps({"query": "a red circle"}).encode()
    own = {"Origin": f"http://127.0.0.1:{server.port}", "Content-Type": "application/json"}
    cases: dict[str, Callable[[], tuple[bool, str]]] = {}

    def expect(status: int, *args, **kwargs) -> Callable[[], tuple[bool, str]]:
        def check() -> tuple[bool, str]:
            got, headers, body = server.request(*args, **kwargs)
            return got == status and no_cors(headers), f"{got} {body.get('error', '')}"
        return check

    cases["the page's own POST works"] = expect(200, "POST", "/api/search", query, own)
    cases["foreign Host (DNS rebinding) -> 421"] = expect(421, "GET", "/api/report", headers={"Host": "attacker.example"})
    cases["cross-origin text/plain POST -> 403"] = expect(
        403, "POST", "/api/search", query, {"Origin": "http://attacker.example", "Content-Type": "text/plain"})
    cases["cross-origin form POST -> 403"] = expect(
        403, "POST", "/api/evaluate", b"text=hi", {"Origin": "http://attacker.example",
                                                   "Content-Type": "application/x-www-form-urlencoded"})
    cases["cross-site POST without Origin -> 403"] = expect(
        403, "POST", "/api/search", query, {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"})
    cases["non-JSON body -> 415"] = expect(415, "POST", "/api/search", query, {"Content-Type": "text/plain"})
    cases["form upload to /api/caption -> 415"] = expect(
        415, "POST", "/api/caption", b"x", {"Content-Type": "multipart/form-data; boundary=x"})
    cases["CORS preflight -> 405, no Access-Control-*"] = expect(
        405, "OPTIONS", "/api/search", headers={"Origin": "http://attacker.example",
                                                "Access-Control-Request-Method": "POST"})

    def no_paths() -> tuple[bool, str]:
        texts = [json.dumps(server.request("GET", path)[2]) for path in ("/api/report", "/api/status")]
        leaked = [str(run.resolve()) in t or str(run.parent.resolve()) in t for t in texts]
        return not any(leaked), f"run_dir shown as {server.request('GET', '/api/report')[2].get('run_dir')!r}"

    cases["report/status name no absolute path"] = no_paths
    json_type = {"Content-Type": "application/json"}
    cases["caption?k=² -> our 400"] = lambda: our_400(server.request(
        "POST", "/api/caption?k=%C2%B2", b"\x89PNG", {"Content-Type": "image/png"}), "k must be a whole number")
    cases["5,000-digit k -> our 400"] = lambda: our_400(server.request(
        "POST", "/api/search", b'{"query": "a", "k": ' + b"9" * 5000 + b"}", json_type), "the request body has a number")
    cases["lone surrogate \\ud800 -> our 400"] = lambda: our_400(server.request(
        "POST", "/api/search", b'{"query": "\\ud800"}', json_type), "the request body has text that is not valid")
    cases["60,000 nested [ -> our 400"] = lambda: our_400(server.request(
        "POST", "/api/search", b"[" * 60_000, json_type), "the request body is nested too deeply")

    def hang_up_mid_upload() -> tuple[bool, str]:
        before = server.log.read_text()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"POST /api/caption HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: image/png\r\n"
                         f"Content-Length: 100000\r\n\r\n".encode() + b"\x89PNG" + b"\0" * 1000)
            time.sleep(0.3)
        time.sleep(0.5)
        added = server.log.read_text()[len(before):]
        alive = server.request("GET", "/api/status")[0] == 200
        ok = alive and not any(w in added for w in ("Traceback", "ERROR", "bug in mie", "Exception"))
        logged = [line.split(": ", 1)[-1] for line in added.splitlines() if line.strip()]
        return ok, f"still answering: {alive}; logged: {logged[-1][:100] if logged else 'nothing'!r}"

    cases["client hangs up mid-upload: not a failure"] = hang_up_mid_upload
    for name, check in cases.items():
        ok, seconds, detail = timed(check)
        row(name, ok and seconds < 5, seconds, detail)

    def post_concurrently(path: str, body: bytes, clients: int = 80) -> dict[int, int]:
        """POST ``body`` as an image from ``clients`` threads at once; how many answers had each status."""
        statuses: list[int] = []
        lock = threading.Lock()

        def post() -> None:
            status = server.request("POST", path, body, {"Content-Type": "image/png"}, timeout=120)[0]
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=post) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {s: statuses.count(s) for s in sorted(set(statuses))}

    def uploads() -> tuple[bool, str]:
        out = io.BytesIO()
        Image.new("RGB", (4096, 4096)).save(out, format="PNG", optimize=True)
        png = out.getvalue()
        before = server.peak_bytes()
        counts = post_concurrently("/api/caption?k=3", png)
        peak = server.peak_bytes()
        ok = peak < PEAK_LIMIT and set(counts) <= {200, 503} and counts.get(200, 0) >= 2
        return ok, (f"{len(png) / 1024:.0f} KB PNG x 80: statuses {counts}; peak RSS {peak / 2**20:.0f} MB "
                    f"(before {before / 2**20:.0f} MB; limit {PEAK_LIMIT / 2**20:.0f} MB)")

    ok, seconds, detail = timed(uploads)
    row("80 concurrent 4096x4096 uploads < 2 GB", ok, seconds, detail)

    def big_bodies() -> tuple[bool, str]:
        noise = os.urandom(8 * 1024 * 1024 - 1024)  # just under the upload limit, and not an image
        counts = post_concurrently("/api/caption", noise)
        peak = server.peak_bytes()
        return peak < PEAK_LIMIT and set(counts) <= {400, 503}, (
            f"8 MB bodies x 80: statuses {counts}; peak RSS {peak / 2**20:.0f} MB")

    ok, seconds, detail = timed(big_bodies)
    row("80 concurrent 8 MB bodies < 2 GB", ok, seconds, detail)


def open_chat(server: Server, tokens: int) -> tuple[socket.socket, bytes]:
    """Start a chat of ``tokens`` new tokens on a raw socket; returns it and what was read (the headers)."""
    body = json.dumps({"messages": [{"role": "user", "content": "tell me a long story"}], "filter": False,
                       "max_new_tokens": tokens}).encode()  # greedy: this barely trained model rarely ends a turn
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock, sock.recv(4096)


def chat_cases(server: Server) -> None:
    """Finding 5 on the lm server: a full reply's length, the queue, abandoned replies, the prompt cap."""
    def full_reply() -> tuple[bool, str]:
        sock, head = open_chat(server, 512)
        data = head
        while b"event: done" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        done = json.loads(data.split(b"event: done\r\ndata: " if b"\r\ndata" in data else b"event: done\ndata: ")[1]
                          .split(b"\n")[0])
        return done["tokens"] > 100, f"one 512-token reply: {done['tokens']} tokens in {done['elapsed_ms'] / 1000:.1f} s"

    ok, seconds, detail = timed(full_reply)
    row("reference: one long reply to the end", ok, seconds, detail)

    def abandoned() -> tuple[bool, str]:
        socks = [open_chat(server, 512)[0] for _ in range(3)]
        status, headers, body = server.request("POST", "/api/chat", json.dumps(
            {"messages": [{"role": "user", "content": "hi"}]}).encode(), {"Content-Type": "application/json"})
        queue_ok = status == 503 and headers.get("retry-after", "").isdigit()
        time.sleep(1.0)
        for sock in socks:  # the three clients go away mid-reply
            sock.close()
        started = time.monotonic()
        sock, data = open_chat(server, 3)
        while b"event: token" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        first = time.monotonic() - started
        sock.close()
        ok = queue_ok and b"event: token" in data and first < 5
        return ok, (f"4th chat while 3 run/wait: {status} Retry-After {headers.get('retry-after')}; after the 3 "
                    f"hung up the next chat's first token came in {first:.2f} s")

    ok, seconds, detail = timed(abandoned)
    row("three abandoned 512-token replies, then a chat", ok, seconds, detail)
    rare = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(7_900))
    ok, seconds, detail = timed(lambda: our_400(server.request("POST", "/api/chat", json.dumps(
        {"messages": [{"role": "user", "content": rare}]}).encode(), {"Content-Type": "application/json"}),
        "the message is "))
    row("24 KB of rare CJK characters: refused first", ok and seconds < 5, seconds, detail)
    row("lm server peak RSS < 1 GB", server.peak_bytes() < 1 << 30, 0.0, f"{server.peak_bytes() / 2**20:.0f} MB")


def main() -> int:
    """Train the tiny runs, serve each, run the cases, print one row per case; exit 1 on any failure."""
    root = Path(tempfile.mkdtemp(prefix="mie-hostile-serve-"))
    try:
        started = time.monotonic()
        clip, lm = train_runs(root)
        print(f"trained the tiny clip and lm runs in {time.monotonic() - started:.0f} s", flush=True)
        print(f"{'case':52s} {'':4s} {'time':>9s}  detail")
        for run, cases in ((clip, clip_cases), (lm, chat_cases)):
            server = Server(run, root / f"{run.name}.log")
            try:
                cases(server, run) if cases is clip_cases else cases(server)
            finally:
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{sum(rows)} of {len(rows)} cases pass")
    return 0 if all(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
