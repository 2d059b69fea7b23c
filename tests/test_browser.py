"""JupyterLab in a real browser: ``make lab``'s command line, headless Chromium, the first cells of
``00_vlm_primer`` run on the project's kernel, and a screenshot for the README.

Needs the system's ``chromium`` and ``chromedriver`` (Debian: ``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them); skipped without them. Writes
``docs/img/jupyterlab_00_vlm_primer.png``. Takes about half a minute.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

from mmkp_helpers.lab import HOST, lab_command

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_vlm_primer.ipynb"
SCREENSHOT = ROOT / "docs" / "img" / "jupyterlab_00_vlm_primer.png"
WINDOW = (1400, 900)
MAX_SCREENSHOT_BYTES = 500_000
RUN_CELLS = 6  # cells 0-5: title, versions, parameters, imports and set-up, a markdown cell, the drawn image
VERSIONS_CELL = 1  # "# Versions and device": prints modeling.versions() and modeling.device_info()


def _find(*names: str) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


CHROMIUM = _find("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _find("chromedriver")
_missing = [what for what, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
                                     ("selenium", importlib.util.find_spec("selenium")),
                                     ("jupyterlab", importlib.util.find_spec("jupyterlab"))) if not found]
if _missing:
    pytest.skip(f"browser test needs {', '.join(_missing)} (Debian: apt-get install chromium chromium-driver; "
                "pip install -r requirements.lock)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab started with make lab's command line (plus --no-browser), on a free port with a
    random token; stopped (with its kernels) afterwards. The notebook is restored byte for byte if
    the session wrote to it."""
    port, token = _free_port(), secrets.token_hex(16)
    cmd = lab_command(port, token, open_browser=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = tmp_path / "jupyterlab.log"
    original = NOTEBOOK.read_bytes()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(f"http://{HOST}:{port}/api/status?token={token}", proc, log)
        yield {"url": f"http://{HOST}:{port}", "token": token, "cmd": cmd, "log": log}
    finally:
        try:  # the server and the kernels it started: one process group
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        changed = NOTEBOOK.read_bytes() != original
        if changed:
            NOTEBOOK.write_bytes(original)
        assert not changed, "the browser session saved notebooks/00_vlm_primer.ipynb (restored)"


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1",
                "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars"):
        options.add_argument(arg)
    if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root
        options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    # The page's viewport is WINDOW exactly (a headless window's size includes no browser chrome
    # on some versions and some on others).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()


def _cells(driver):
    return driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


def _kernel_idle(driver) -> bool:
    found = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
    return bool(found) and found[0].get_attribute("data-status") == "idle"


def _output_text(driver, index: int) -> str:
    cells = _cells(driver)
    if len(cells) <= index:
        return ""
    return "\n".join(o.text for o in cells[index].find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))


def test_lab_command_is_make_labs():
    """The Makefile's lab target runs this module, and the command line binds the loopback only."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlab: setup\n", 1)[1].splitlines()[0]
    assert "-m mmkp_helpers.lab" in recipe, recipe
    cmd = lab_command(8888, "t", root=True)
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--allow-root" in cmd and "--IdentityProvider.token=t" in cmd
    assert "--allow-root" not in lab_command(8888, "t", root=False)
    assert cmd[0] == sys.executable  # JupyterLab runs from the project's interpreter, so does its python3 kernel


def test_primer_runs_in_jupyterlab(lab, browser):
    start = time.monotonic()
    wait = WebDriverWait(browser, 90, poll_frequency=0.25)
    browser.get(f"{lab['url']}/lab/tree/{NOTEBOOK.name}?token={lab['token']}")
    try:
        wait.until(lambda d: len(_cells(d)) > RUN_CELLS and _kernel_idle(d))
    except TimeoutException:
        pytest.fail(f"the notebook or its kernel did not come up:\n{lab['log'].read_text()[-3000:]}")
    kernelspecs = json.load(urllib.request.urlopen(f"{lab['url']}/api/kernelspecs?token={lab['token']}"))
    assert kernelspecs["default"] == "python3", kernelspecs

    # Command mode on the first cell, then Shift+Enter through the first cells (markdown cells render).
    _cells(browser)[0].click()
    actions = webdriver.ActionChains(browser).send_keys(Keys.ESCAPE)
    for _ in range(RUN_CELLS):
        actions = actions.key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).pause(0.2)
    actions.perform()

    try:
        wait.until(lambda d: "'torch'" in _output_text(d, VERSIONS_CELL) and "'device'" in _output_text(d, VERSIONS_CELL))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell "
                                                              ".jp-RenderedImage img"))
        wait.until(_kernel_idle)
    except TimeoutException:
        shown = "\n".join(f"[{i}] {_output_text(browser, i)[:300]}" for i in range(RUN_CELLS))
        pytest.fail(f"the first cells did not produce their outputs; outputs so far:\n{shown}\n"
                    f"server log:\n{lab['log'].read_text()[-2000:]}")

    versions = _output_text(browser, VERSIONS_CELL)
    # The kernel is the project's interpreter: same Python and the same pinned packages as this test's.
    assert f"'python': '{platform.python_version()}'" in versions, versions
    for package in ("transformers", "peft", "papermill"):
        assert f"'{package}': '{metadata.version(package)}'" in versions, (package, versions)
    errors = [_output_text(browser, i) for i in range(RUN_CELLS)
              if _cells(browser)[i].find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type="
                                                                   "'application/vnd.jupyter.error']")]
    assert not errors, errors

    # The picture: the versions cell at the top, JupyterLab's first-run "news?" notice answered.
    for button in browser.find_elements(By.CSS_SELECTOR, ".Toastify__toast button"):
        if button.text.strip() == "No":
            button.click()
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", _cells(browser)[VERSIONS_CELL])
    time.sleep(0.5)
    png = browser.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < MAX_SCREENSHOT_BYTES, len(png)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)
    assert time.monotonic() - start < 120
