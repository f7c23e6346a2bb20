"""Explanations worked out in a process of their own, beside the dashboard's.

A text's explanation (core.training.explain) takes 0.3 s with the bundled model on 2 CPU cores, but several seconds
with a BERT-base model, and on a shared classroom server thirty pages asking at once would each hold the server's
CPU from their page thread. So the dashboard hands every explanation to one process, started once for the server
and kept: it loads each run's model once (the last few are kept), explains one text at a time in the order asked,
and a page waits for its answer asleep on a pipe, holding nothing. Predictions stay in the page: one forward pass.

The process leaves when the dashboard does (its end of the pipe closes), and one that died (out of memory on a long
text) is started again at the next question."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from core import i18n
from core.i18n import _
from core.store.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from core.training.explain import Explanation

KEEP_MODELS = 4  # loaded models the process keeps, the most recently asked for


class ExplainerStopped(ValueError):
    """The explaining process stopped while it worked on a text, in plain words."""


class Explainer:
    """One explaining process for this server; `explain` may be called from any page's thread."""

    def __init__(self, settings: Settings, keep: int = KEEP_MODELS):
        self.settings, self.keep = settings, keep
        self._lock = threading.Lock()  # one question on the pipe at a time; the others wait their turn
        self._process: subprocess.Popen | None = None
        self._pipe: Connection | None = None

    def start(self) -> None:
        """Start the process now (its imports take seconds), so that it is ready when a text is first explained."""
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._close()
        # A fresh interpreter (not a fork of a server that has threads, perhaps a CUDA context) that runs this module.
        # Not multiprocessing's spawn: it runs the parent's __main__ again in the child, and in the dashboard that is
        # the page script, which then started a worker, and an explaining process, from inside the explaining one.
        ours, theirs = socket.socketpair()
        with theirs:  # the child's end lives in the child alone, so that either side sees the other leave
            self._process = subprocess.Popen(
                [sys.executable, "-m", "core.jobs.explainer", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                cwd=PROJECT_ROOT,
            )
        self._pipe = Connection(ours.detach())
        self._pipe.send((self.settings, self.keep))

    def explain(self, run_id: int, text: str, target: str | None = None) -> Explanation:
        """Run `run_id`'s explanation of the text (core.training.explain.explain), worked out in the process.
        Raises ValueError (core.training.explain.CannotExplain, ExplainerStopped) with a plain message."""
        from core.training.explain import CannotExplain

        with self._lock:
            self._ensure_started()
            try:
                self._pipe.send((run_id, text, target, i18n.language()))
                ok, answer = self._pipe.recv()
            except (EOFError, OSError):
                code = self._process.poll() if self._process is not None else None
                self._close()
                raise ExplainerStopped(
                    _(
                        "The process that works out explanations stopped while it worked on this text, perhaps out "
                        "of memory: ask again, or try a shorter text."
                    )
                    if code is None
                    else _(
                        "The process that works out explanations stopped while it worked on this text (exit code "
                        "{code}), perhaps out of memory: ask again, or try a shorter text.",
                        code=code,
                    )
                ) from None
        if not ok:
            raise CannotExplain(answer)
        return answer

    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()  # the process reads the end of its input and leaves
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = self._pipe = None


def serve(pipe, settings: Settings, keep: int) -> None:
    """The process's loop: (run id, text, target, the asker's language) in; (True, Explanation) or (False, why not,
    in plain words, in that language) out."""
    from core.store.db import Run, open_database, session_factory
    from core.training import explain, models, predict

    loaded: OrderedDict = OrderedDict()  # a run's uid -> its Predictor: a reused id is another run
    open_database(settings.db_url)
    sessions = session_factory(settings.db_url, read_only=True)
    while True:
        try:
            run_id, text, target, language = pipe.recv()
        except (EOFError, OSError):
            return  # the dashboard left
        with i18n.speaking(language):  # its refusals in the words of the page that asked
            try:
                with sessions() as s:
                    run = s.get(Run, run_id)
                    if run is None:
                        raise predict.RunNotReady(_("Run {run} no longer exists.", run=run_id))
                    key = run.uid or run.id
                    if key not in loaded:
                        loaded[key] = predict.load_run(settings, run)
                        while len(loaded) > keep:
                            loaded.popitem(last=False)
                loaded.move_to_end(key)
                answer = (True, explain.explain(loaded[key], text, target))
            except (predict.RunNotReady, models.ModelSourceError, OSError, ValueError) as e:  # CannotExplain too
                answer = (False, str(e))
            except Exception as e:  # noqa: BLE001 - the process answers every question; the page says what went wrong
                answer = (False, f"{type(e).__name__}: {e}")
        try:
            pipe.send(answer)
        except (EOFError, OSError):
            return


def main(argv: list[str] | None = None) -> None:
    """The explaining process: `python -m core.jobs.explainer FD`, FD its end of the dashboard's connection, on which
    the settings and how many models to keep come first."""
    pipe = Connection(int((sys.argv[1:] if argv is None else argv)[0]))
    try:
        settings, keep = pipe.recv()
    except (EOFError, OSError):
        return
    serve(pipe, settings, keep)


if __name__ == "__main__":
    main()
