"""Processes that die with their parent and take their process group with them.

A SIGKILL of the runner must not leave a kernel or a download worker running (an orphaned
img2dataset worker fills its shard with "Connection refused"). Neither SIGKILL nor the
parent-death signal reaches grandchildren, so each link polls ``getppid``: the runner's kernels
(``python -m laionet.jobs.processes``) and stage 03's img2dataset child kill their process group
when their parent is gone.
"""

import contextlib
import functools
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any

POLL_S = 0.1


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
        return True
    return False


def tie_to_parent(parent_pid: int | None = None) -> threading.Thread:
    """Kill this process (and the group it leads) once ``parent_pid`` (default: the current
    parent) is no longer its parent. Returns the daemon watcher thread."""
    parent = os.getppid() if not parent_pid else int(parent_pid)

    def watch() -> None:
        while True:
            if os.getppid() != parent:  # reparented: the parent died
                if os.getpgrp() == os.getpid():
                    kill_group(os.getpid())
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(POLL_S)

    thread = threading.Thread(target=watch, name="laionet-tether", daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------- the runner's kernels
_KERNELS: dict[int, Any] = {}  # pid -> Popen of the kernels this process started and not shut down
# set by the runner on Ctrl-C / SIGTERM: kernels shut down from then on are killed at once with
# their groups, not asked to stop (a busy kernel would print tracebacks while winding down)
STOPPING = threading.Event()


def tethered_cmd(cmd: list[str]) -> list[str]:
    """A kernel command of this interpreter run as ``-m laionet.jobs.processes``, not
    ``-m ipykernel_launcher`` (options such as ``-Xfrozen_modules=off`` may come first)."""
    cmd = list(cmd)
    i = cmd.index("ipykernel_launcher") if "ipykernel_launcher" in cmd[1:] else 0
    same = os.path.realpath(shutil.which(cmd[0]) or cmd[0]) == os.path.realpath(sys.executable)
    if i and cmd[i - 1] == "-m" and same:
        cmd[i] = "laionet.jobs.processes"
    return cmd


@functools.cache
def kernel_manager_class() -> type:
    """jupyter_client's ``AsyncKernelManager`` whose kernels are tied to this process
    (``tethered_cmd``), their group killed once they shut down (for papermill)."""
    from jupyter_client.manager import AsyncKernelManager

    class TiedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return tethered_cmd(super().format_kernel_cmd(extra_arguments))

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            proc = getattr(self.provisioner, "process", None)
            if proc is not None:
                _KERNELS[proc.pid] = proc

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            proc = getattr(self.provisioner, "process", None)
            if STOPPING.is_set() and proc is not None:
                kill_group(proc.pid)
                now = True
            await super().shutdown_kernel(now=now, restart=restart)
            if proc is not None:
                kill_group(proc.pid)  # the kernel led its group: what it left running
                _KERNELS.pop(proc.pid, None)

    return TiedKernelManager


def kill_kernels() -> int:
    """Kill every kernel this process started and did not shut down; how many there were."""
    n = len(_KERNELS)
    for pid, proc in list(_KERNELS.items()):
        kill_group(pid)
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait(timeout=5)
        _KERNELS.pop(pid, None)
    return n


if __name__ == "__main__":  # ``python -m laionet.jobs.processes -f CONNECTION_FILE``: an ipykernel
    launcher = int(os.environ.get("JPY_PARENT_PID") or 0)  # tied to its launcher
    tie_to_parent(launcher if launcher == os.getppid() else None)
    if sys.path and sys.path[0] in ("", os.getcwd()):  # as ipykernel_launcher does; IPython
        del sys.path[0]                                  # puts the working folder back
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
