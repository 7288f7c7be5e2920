"""``glinker serve -p PIPELINE``: the pipeline behind HTTP (``POST /link``, ``GET /health``, a demo page at ``/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from glinker.cli import dtype_option


def serve(
    pipeline: Path = typer.Option(..., "--pipeline", "-p", help="Pipeline YAML (examples: pipelines/wikidata.yaml in the source repository)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0: any free port; printed at start)."),
    model: Optional[str] = typer.Option(None, "--model", help="Override the pipeline's model."),
    kb: Optional[str] = typer.Option(None, "--kb", help="Override the pipeline's KB directory."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    dtype: Optional[str] = dtype_option("the pipeline's settings.dtype, else the checkpoint's"),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, help="How long the first queued request waits for others to share its batch."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", min=1, help="Documents linked together at most (default: the pipeline's batch_size)."),
    max_chars: int = typer.Option(200_000, "--max-chars", min=1, help="Characters of text one request may hold (a bigger one is a 413: one huge request would hold every client)."),
    max_docs: int = typer.Option(1_000, "--max-docs", min=1, help="Documents one request may hold (a bigger one is a 413: each document costs linking time, however short its text)."),
    max_body: int = typer.Option(4 * 1024 * 1024, "--max-body", min=1, help="Bytes of body one request may send (a bigger one is a 413; a body is parsed into objects of up to ~40 times its size)."),
    max_meta_items: int = typer.Option(100_000, "--max-meta-items", min=0, help="Values the documents' meta of one request may hold together (a bigger one is a 413: meta is echoed in the answer, not linked)."),
    max_connections: int = typer.Option(64, "--max-connections", min=1, help="Connections served at once, idle ones included (a thread each); more wait in the queue until one ends, or until an idle one is closed to make room."),
    request_timeout: float = typer.Option(60.0, "--request-timeout", min=0.001, help="Seconds a client has to send a whole request, headers and body, from its first byte."),
    idle_timeout: float = typer.Option(5.0, "--idle-timeout", min=0.001, help="Seconds a connection may wait for a request's first byte (a new one, or a kept-alive one between requests) before it is closed."),
    allow_host: list[str] = typer.Option([], "--allow-host", metavar="NAME", help="A Host name clients reach the server by (repeatable; '*': any). On a loopback --host only localhost names and IP addresses are answered otherwise (DNS rebinding); on another --host, naming some turns the check on."),
) -> None:
    """Serve a pipeline over HTTP. Concurrent requests are linked together in batches on one thread.

    POST /link with {"text": ...}, {"texts": [...]} or {"documents": [{"id", "text", "meta"}]} returns
    {"documents": [...]} (the records `glinker link` writes); GET /health; GET / is a page to try texts on.
    There is no authentication: beyond localhost, put it behind a reverse proxy that adds it (and TLS)."""
    import signal
    import threading

    import glinker
    from glinker.serve import Server, host_port

    pipe = glinker.load_pipeline(str(pipeline), model=model, kb=kb, device=device, dtype=dtype)
    srv: Server | None = None

    def on_sigterm(*_: object) -> None:
        """SIGTERM (docker stop, Kubernetes) stops like Ctrl-C: requests in flight finish, then the process exits;
        during the warm-up, as Ctrl-C does there (the stages are closed once it ends)."""
        if srv is None:
            raise KeyboardInterrupt
        threading.Thread(target=srv.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        # an interrupted warm-up closes the stages before Server raises; from here on, stop() closes them
        srv = Server(pipe, host, port, max_wait=max_wait_ms / 1000, max_batch=max_batch, max_chars=max_chars,
                     max_docs=max_docs, max_body=max_body, max_meta_items=max_meta_items,
                     max_connections=max_connections, request_timeout=request_timeout,
                     idle_timeout=idle_timeout, allow_hosts=allow_host)
        typer.echo(f"glinker serving {pipe.name} on http://{host_port(srv.host, srv.port)} (POST /link, GET /health, "
                   "GET /)", err=True)
        srv.serve_forever()
    except KeyboardInterrupt:
        if srv is None:
            raise  # stopped while loading: nothing was served
    finally:
        if srv is not None:
            srv.stop()  # every request already received gets its answer first, then the stages are closed
    typer.echo(f"stopped after {srv.batcher.documents} documents", err=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
