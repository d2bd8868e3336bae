"""How the library starts worker processes: never by forking a multi-threaded process.

A recorder has threads (the journal's flusher, a PostgreSQL mirror, the user's own),
and ``fork()`` copies only the calling thread: a lock another thread held at that
moment stays locked forever in the child. Python 3.12 warns about it
(``DeprecationWarning``); 3.14 stopped using fork by default.

multiprocessing's other start methods (``spawn``, ``forkserver``) run the user's main
script again in each child, unless it is guarded by ``if __name__ == "__main__"``: a
library that starts a process behind ``start_run`` cannot ask that of every script.
So :class:`ForkServer` is a fork server of our own: the first time a process needs a
projector, it starts one small server with :mod:`subprocess` (a fresh interpreter that
imports only the library, ~0.45 s of CPU once) and then asks it, over a Unix socket, to
fork each worker, handing over the worker's pipe ends with ``SCM_RIGHTS``. The server
has a single thread, so its forks are safe, and a worker costs a fork, not an
interpreter start. The server exits when the process that started it closes its
socket (exits); workers it forked run on until they have finished their own work.

The pools of the parallel replay and verify (:func:`pool_context`) fork while this
process has a single thread ("fork before threads": the workers inherit the loaded
payload index and a shared ring, nothing is pickled; the command line's case), and
otherwise use the standard ``forkserver`` method, preloaded (a library caller with
threads: Python's own multiprocessing rules apply, as they do by default from 3.14).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing
import multiprocessing.context
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from typing import Any, Final, NoReturn

from ..errors import AuditJournalError

__all__ = [
    "POOL_PRELOAD",
    "ForkServer",
    "PoolContext",
    "anonymous_file",
    "fork_server",
    "pool_context",
    "thread_count",
]

POOL_PRELOAD: Final = ("auditjournal.export.replay", "auditjournal.evidence.chunkscan")
"""Modules the standard fork server imports once, before it forks pool workers."""

SERVER_PRELOAD: Final = ("auditjournal.projection.child", "auditjournal.sql.preload")
"""Modules our fork server imports once, before it forks any worker."""
_MAX_REQUEST: Final = 1 << 20
_MAX_FDS: Final = 16

PoolContext = multiprocessing.context.BaseContext


def thread_count() -> int:
    """This process's threads as the OS counts them (C threads too), where it says."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - not Linux
        return threading.active_count()


def pool_context() -> tuple[PoolContext, bool]:
    """The start method of a worker pool, and whether its workers inherit this process's
    memory: fork while this process has one thread, else forkserver (preloaded) or spawn."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and thread_count() == 1:
        return multiprocessing.get_context("fork"), True
    if "forkserver" in methods:
        forkserver = multiprocessing.get_context("forkserver")
        forkserver.set_forkserver_preload(list(POOL_PRELOAD))
        return forkserver, False
    return multiprocessing.get_context("spawn"), False


class ForkServer:
    """A single-threaded server process that forks workers on request (see the module)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (
            f"import sys; sys.path[:] = {sys.path!r}; "
            "from auditjournal.fs.processes import serve; serve()"
        )
        options = [f"-W{option}" for option in sys.warnoptions]  # -W error reaches it too
        try:
            self._server = subprocess.Popen(
                [sys.executable, *options, "-c", code, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours
        self._lock = threading.Lock()
        self.pid = os.getpid()
        """The process this server serves (a forked copy of it needs its own)."""

    def start(self, module: str, function: str, args: tuple[Any, ...], fds: list[int]) -> int:
        """Fork a worker that calls ``module.function(*args, *fds)``; returns its pid.
        The worker gets copies of ``fds`` (the caller closes its own) and the caller's
        environment as it is now (a key set after the server started, say)."""
        request = pickle.dumps((module, function, args, dict(os.environ)))
        with self._lock:
            try:
                socket.send_fds(self._socket, [request], fds)
                reply = self._socket.recv(8)
            except OSError as exc:
                raise AuditJournalError(f"the worker fork server is gone: {exc}") from exc
        if len(reply) != 8:
            raise AuditJournalError("the worker fork server is gone (it exited)")
        return int.from_bytes(reply, "little")

    def alive(self) -> bool:
        return self._server.poll() is None

    def close(self) -> None:
        self._socket.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._server.wait(5)


def anonymous_file(size: int) -> int:
    """A descriptor of a file in memory only (never written back), ``size`` zero bytes:
    for memory shared with workers by mapping it (they get the descriptor)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("auditjournal-shared", os.MFD_CLOEXEC)
    else:  # pragma: no cover - not Linux
        with tempfile.TemporaryFile() as fh:
            fd = os.dup(fh.fileno())
    os.ftruncate(fd, size)
    return fd


_server: ForkServer | None = None
_server_lock = threading.Lock()


def fork_server() -> ForkServer:
    """This process's fork server, started on first use (again if it died)."""
    global _server
    with _server_lock:
        server = _server
        if server is None or server.pid != os.getpid() or not server.alive():
            if server is None:
                atexit.register(_close_server)
            _server = server = ForkServer()
        return server


def _close_server() -> None:
    """At exit: let the server go (it exits on end of file) and reap it."""
    server = _server
    if server is not None and server.pid == os.getpid():
        server.close()


def serve() -> None:
    """The fork server's main loop (``sys.argv[1]``: its socket's descriptor)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the recorder decides when workers stop
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    for name in SERVER_PRELOAD:
        importlib.import_module(name)
    with socket.socket(fileno=int(sys.argv[1])) as sock:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, _MAX_FDS)
            except OSError:
                return
            if not data:
                return  # the process it served is gone
            pid = os.fork()
            if pid == 0:
                sock.close()
                _worker(data, fds)
            for fd in fds:
                os.close(fd)
            try:
                sock.send(pid.to_bytes(8, "little"))
            except OSError:
                return


def _worker(request: bytes, fds: list[int]) -> NoReturn:
    """In a forked worker: call what was asked, then exit (never back into the loop)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 0
    try:
        module, function, args, environment = pickle.loads(request)
        os.environ.clear()
        os.environ.update(environment)
        getattr(importlib.import_module(module), function)(*args, *fds)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
