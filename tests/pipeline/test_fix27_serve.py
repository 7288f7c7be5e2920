"""`glinker serve` stopped (Ctrl-C, SIGTERM) while a stage warms up: the stages' close() runs, once, on the batch
thread, before the process ends (the batch thread is a daemon: it was ended with the process, close() unrun)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from glinker.pipeline import Pipeline, Stage, StageParams, loads_spec
from glinker.pipeline.registry import StageRegistry
from glinker.types import Mention

pytestmark = pytest.mark.timeout(120)


class SlowWarmUp(Stage):
    """A stage whose warm-up waits for ``release`` and whose close() records the thread it ran on."""

    type_name = "t_slow_warm_up"
    accepts = ("documents",)
    produces = "mentions"
    Params = StageParams
    started: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()
    closed: ClassVar[list[int]] = []

    def warm_up(self) -> None:
        type(self).started.set()
        type(self).release.wait(60)

    def run(self, documents: Any, inputs: Any) -> list[list[Mention]]:
        return [[] for _ in documents]

    def close(self) -> None:
        type(self).closed.append(threading.get_ident())


def _pipeline() -> Pipeline:
    reg = StageRegistry()
    reg.register(SlowWarmUp)
    SlowWarmUp.started, SlowWarmUp.release, SlowWarmUp.closed = threading.Event(), threading.Event(), []
    return Pipeline(loads_spec("name: s\nstages:\n  slow: {type: t_slow_warm_up}\n", reg=reg, source="s.yaml"))


def test_ctrl_c_during_the_warm_up_closes_the_stages_before_the_server_gives_up():
    """The constructor raised KeyboardInterrupt at once, leaving the warm-up running on a daemon thread that the
    ending process would kill before it got to close()."""
    from glinker.serve import Server

    pipe = _pipeline()
    main = threading.get_ident()

    def interrupt() -> None:
        assert SlowWarmUp.started.wait(30)
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, on the thread waiting for the warm-up
        time.sleep(1.0)  # the warm-up goes on a while after the Ctrl-C
        SlowWarmUp.release.set()

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=interrupt, daemon=True)
    try:
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            Server(pipe, port=0)
        # the warm-up ended, then the stages were closed, once, on the batch thread, before the Ctrl-C went on
        assert len(SlowWarmUp.closed) == 1 and SlowWarmUp.closed != [main]
        assert not any(t.name == "glinker-serve-batcher" and t.is_alive() for t in threading.enumerate())
    finally:
        SlowWarmUp.release.set()
        helper.join(timeout=30)
        signal.signal(signal.SIGINT, before)
    time.sleep(0.2)
    assert len(SlowWarmUp.closed) == 1  # not closed a second time later


PLUGIN = '''
import threading, time
from pathlib import Path
from glinker.pipeline import Stage, StageParams

MARKS = Path(__file__).resolve().parents[2] / "marks"


class SlowWarmUp(Stage):
    type_name = "t_slow_warm_up_cli"
    accepts = ("documents",)
    produces = "mentions"
    Params = StageParams

    def warm_up(self):
        (MARKS / "warming").write_text("")
        while not (MARKS / "release").exists():
            time.sleep(0.02)

    def run(self, documents, inputs):
        return [[] for _ in documents]

    def close(self):
        with open(MARKS / "closed", "a") as f:
            f.write("close\\n")
'''


def _plugin(root: Path) -> Path:
    """A distribution declaring the stage in the ``glinker.stages`` entry points, on a path of its own."""
    pkg = root / "site" / "fix27_slow_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN)
    info = root / "site" / "fix27_slow_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fix27-slow-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[glinker.stages]\nt_slow_warm_up_cli = fix27_slow_plugin:SlowWarmUp\n")
    (root / "marks").mkdir()
    (root / "p.yaml").write_text("name: slow\nstages:\n  slow: {type: t_slow_warm_up_cli}\n")
    return root / "site"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_command_stopped_during_the_warm_up_closes_the_stages_once(tmp_path, sig):
    import os

    site = _plugin(tmp_path)
    marks = tmp_path / "marks"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    p = subprocess.Popen([sys.executable, "-m", "glinker", "serve", "-p", str(tmp_path / "p.yaml"), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (marks / "warming").exists():
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        p.send_signal(sig)
        time.sleep(1.0)  # the warm-up goes on a while after the signal
        (marks / "release").write_text("")
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert (marks / "closed").exists(), err
    assert (marks / "closed").read_text() == "close\n", err  # once
    assert p.returncode != 0 and "serving" not in err and "stopping: the stages are closed once" in err, err
