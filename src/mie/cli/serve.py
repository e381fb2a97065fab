"""``mie serve RUN_DIR [--host 127.0.0.1] [--port 7860]``: the local web app over a run (``mie.serve``).

RUN_DIR is a clip run (text search over its test images, captions for an uploaded image, its report),
an lm run (chat and report) or the name of a pretrained chat model (``smollm2-135m-instruct``); every
kind has the safety tab. The server listens on 127.0.0.1 unless ``--host`` says otherwise, and answers
only requests addressed to 127.0.0.1, localhost, ::1 or that ``--host`` (the Host header), whose
state-changing requests come from its own page (``mie.serve.guard``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket

from mie.errors import ConfigError

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie serve``."""
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a clip or lm run directory, or a pretrained chat model name (smollm2-135m-instruct)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which weights of a clip run to use (default best)")
    parser.add_argument("--safety-methods", default="auto", metavar="M",
                        help="safety evaluator methods: auto (rules, + embeddings when installed) or e.g. rules")


def check_port_free(host: str, port: int) -> None:
    """A one-line ConfigError when ``host:port`` cannot be listened on (in use, or not this machine's)."""
    if not 0 < port < 65536:
        raise ConfigError(f"must be from 1 to 65535, got {port}", where="--port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: a name IDNA refuses ("..", a 64+ letter label)
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        raise ConfigError(f"cannot resolve {host!r} ({reason})", where="--host", fix="use e.g. 127.0.0.1") from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} is in use", where="--port",
                                  fix=f"stop what listens there or pick another, e.g. --port {port + 1}") from exc
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror})", where="--host",
                              fix="use 127.0.0.1 or an address of this machine") from exc


def run(args: argparse.Namespace) -> int:
    """Check the run and the port, start loading the model in the background, serve until Ctrl-C."""
    import uvicorn

    from mie.serve import create_app

    check_port_free(args.host, args.port)
    app = create_app(args.run_dir, checkpoint=args.checkpoint, safety_methods=args.safety_methods, hosts=[args.host])
    if args.host not in LOOPBACK:
        log.warning("listening on %s: anyone who can reach this machine can use the app (it has no login); only "
                    "requests addressed to %s or a loopback name are answered", args.host, args.host)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mie serve: {args.run_dir} on http://{shown}:{args.port}/ (the model loads in the background; "
          "Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
