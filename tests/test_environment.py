"""The three descriptions of the environment agree: pyproject.toml (ranges), requirements.lock
(exact pins, used by `make`), environment.yml (conda, points at the lock). And the two set-up
commands exist where the README says."""
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", line), f"not an exact pin: {line}"
        name, version = line.split("==")
        assert canonicalize_name(name) not in pins, f"pinned twice: {name}"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_range_is_pinned_inside_it():
    project = _pyproject()["project"]
    pins = _lock()
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} has a range in pyproject.toml but no pin in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}")


def test_cpu_torch_pin_is_the_local_build():
    assert _lock()["torch"] == Version("2.13.0")


def test_environment_yml_points_at_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]
    requires = _pyproject()["project"]["requires-python"]
    assert Requirement("python" + requires).specifier.contains("3.11")
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-r requirements.lock" in pip_section and "-e ." in pip_section
    # conda itself installs nothing the lock pins differently (only python and pip)
    conda_pkgs = [re.split(r"[=<>]", d)[0] for d in deps if isinstance(d, str)]
    assert set(conda_pkgs) <= {"python", "pip"}


def test_makefile_uses_the_lock_and_ci_calls_make_test():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup:", "test:", "reproduce:", "lab:"):
        assert re.search(rf"^{target}", makefile, re.M), target
    assert "-r requirements.lock" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme


def test_console_scripts_resolve():
    import importlib

    for target in _pyproject()["project"]["scripts"].values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_pytest_markers_declared():
    markers = " ".join(_pyproject()["tool"]["pytest"]["ini_options"]["markers"])
    for marker in ("slow", "notebooks", "gpu"):
        assert marker + ":" in markers


def test_tests_cannot_reach_the_network():
    import os
    import socket

    import pytest

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(OSError, match="tests may not use the network"):
        socket.create_connection(("93.184.215.14", 80), timeout=5)


def test_uv_gets_pips_configuration():
    """make setup installs the lock with uv, which does not read pip's configuration: tools/uv_flags.py
    translates it (a PIP_* variable over the install section over global; lists split; the cert
    apart), and always asks for pip's choice of the best version over every index."""
    import importlib.util
    import shlex

    spec = importlib.util.spec_from_file_location("uv_flags", ROOT / "tools" / "uv_flags.py")
    uv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(uv)
    listing = "\n".join([
        ":env:.find-links='/opt/wheels'",
        "global.find-links='/elsewhere'",
        "global.constraint='/etc/xdg/pip/constraints.txt'",
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'",
        "install.index-url='https://mirror.example/simple'",
        "global.index-url='https://pypi.org/simple'",
        "global.cert='/etc/ssl/certs/ca-certificates.crt'",
        "global.default-timeout='180'",
        "not a config line",
    ])
    config = uv.parse_config_list(listing)
    assert config["find-links"] == "/opt/wheels" and config["index-url"] == "https://mirror.example/simple"
    assert config["cert"] == "/etc/ssl/certs/ca-certificates.crt"
    assert uv.uv_flags(config) == [
        "--index-strategy", "unsafe-best-match", "--index-url", "https://mirror.example/simple",
        "--extra-index-url", "file:///opt/pypi/simple", "--extra-index-url", "file:///opt/pypi-more/simple",
        "--find-links", "/opt/wheels", "--constraint", "/etc/xdg/pip/constraints.txt"]
    assert uv.uv_flags(uv.parse_config_list(":env:.no-index='true'"))[-1] == "--no-index"
    assert uv.uv_flags({}) == ["--index-strategy", "unsafe-best-match"]
    # the Makefile uses it, with a pinned uv and pip as the fallback
    makefile = (ROOT / "Makefile").read_text()
    assert "tools/uv_flags.py" in makefile and re.search(r"^UV_VERSION := \d+\.\d+\.\d+$", makefile, re.M)
    assert "uv failed: installing with pip" in makefile
    assert shlex.split(" ".join(shlex.quote(f) for f in uv.uv_flags(config))) == uv.uv_flags(config)
