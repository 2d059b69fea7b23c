"""``make lab``: JupyterLab on the notebooks, with the project's kernel, on this machine only.

One definition of the command line, :func:`lab_command`, used by ``make lab``
(``python -m mmkp_helpers.lab``) and by ``tests/test_browser.py``, so the test starts JupyterLab
exactly the way a reader does.

- JupyterLab runs from the interpreter that runs this module (``.venv/bin/python`` under
  ``make lab``); its ``python3`` kernelspec then starts that same interpreter, so the notebooks
  import the project's pinned packages, not a system Python's.
- It listens on 127.0.0.1 only (a token still guards it); reach it from another machine with an
  SSH tunnel (``ssh -L 8888:127.0.0.1:8888 host``).
- Run as root (a container, a cloud VM), Jupyter refuses to start without ``--allow-root``;
  it is added when the effective user id is 0.
"""
from __future__ import annotations

import argparse
import os
import sys

from .paths import project_root

DEFAULT_PORT = 8888
HOST = "127.0.0.1"


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(port: int = DEFAULT_PORT, token: str | None = None, root: bool | None = None,
                open_browser: bool = True) -> list[str]:
    """The JupyterLab command line (argv) on the project's notebooks.

    - ``port``: the port on 127.0.0.1; no fallback to another port (a second ``make lab`` fails
      loudly instead of starting silently elsewhere).
    - ``token``: the access token; ``None`` lets Jupyter make one (it prints the URL with it).
    - ``root``: running as root (adds ``--allow-root``); ``None`` asks the operating system.
    - ``open_browser``: open a browser tab (``make lab``); the browser test drives its own."""
    if root is None:
        root = is_root()
    cmd = [sys.executable, "-m", "jupyter", "lab",
           f"--notebook-dir={project_root() / 'notebooks'}",
           f"--ServerApp.ip={HOST}",
           f"--ServerApp.port={int(port)}",
           "--ServerApp.port_retries=0"]
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if root:
        cmd.append("--allow-root")
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmkp_helpers.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT", DEFAULT_PORT)),
                        help=f"port on {HOST} (default $LAB_PORT or {DEFAULT_PORT})")
    parser.add_argument("--token", default=None, help="access token (default: Jupyter makes one and prints it)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    parser.add_argument("--print", action="store_true", help="print the command line instead of running it")
    args = parser.parse_args(argv)
    cmd = lab_command(args.port, args.token, open_browser=not args.no_browser)
    if args.print:
        print(" ".join(cmd))
        return 0
    print("mmkp lab:", " ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)  # JupyterLab replaces this process (Ctrl-C stops it as usual)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
