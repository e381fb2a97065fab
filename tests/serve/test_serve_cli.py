"""``mie serve``: the command checks its run and port in one line, and listens on 127.0.0.1 by default."""

from __future__ import annotations

import socket

import pytest

from mie.cli import main


def test_help_names_the_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--host" in out and "127.0.0.1" in out and "--port" in out and "smollm2-135m-instruct" in out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_listens_on_loopback_by_default(clip_run, monkeypatch, capsys):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    port = free_port()
    assert main(["serve", str(clip_run), "--port", str(port), "--safety-methods", "rules"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == port
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
    assert seen["app"].state.serve.wait(timeout=60)  # its background load ends before the test does


def test_a_port_in_use_is_one_line(clip_run, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert main(["serve", str(clip_run), "--port", str(port)]) == 1
    assert capsys.readouterr().err.strip() == (f"mie serve: error: --port: port {port} is in use — stop what listens "
                                               f"there or pick another, e.g. --port {port + 1}")


@pytest.mark.parametrize("config, message", [
    (None, "config.yaml not found; pass the run directory written by `mie train`"),
    ("recipe: seq2seq\n", "is a seq2seq run; mie serve serves clip and lm runs"),
])
def test_what_cannot_be_served_is_one_line(tmp_path, capsys, config, message):
    if config is not None:
        (tmp_path / "config.yaml").write_text(config, encoding="utf-8")
    assert main(["serve", str(tmp_path), "--port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mie serve: error: ") and message in err and err.count("\n") == 1


def test_unknown_safety_methods_are_one_line(clip_run, capsys):
    assert main(["serve", str(clip_run), "--port", str(free_port()), "--safety-methods", "nope"]) == 1
    assert "--safety-methods: unknown method nope" in capsys.readouterr().err


def test_an_oversized_run_folder_is_refused_before_the_server_starts(clip_run, tmp_path, monkeypatch, capsys):
    import shutil

    import uvicorn
    import yaml

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(app))
    run = tmp_path / "huge"
    shutil.copytree(clip_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["vision_layers"] = 1_000_000
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["serve", str(run), "--port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.vision_layers: 1,000,000 is more than 1,024" in err
    assert not started
