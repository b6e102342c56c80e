"""Packaging: one ``rnnbench`` import namespace, a wheel and an sdist that hold what a user needs,
and an install that works beside another project's module named ``kernels``."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SUBPACKAGE_FOLDERS = {"kernels": "rnnbench.kernels", "baselines": "rnnbench.baselines", "harness": "rnnbench.harness"}


def _requirement_name_and_bound(requirement: str) -> tuple[str, str | None]:
    spec = requirement.split(";")[0].strip()
    if ">=" not in spec:
        return spec, None
    name, bound = spec.split(">=")
    return name.strip(), bound.strip()


def test_ci_pins_every_runtime_dependency_at_its_declared_lower_bound():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name] = version
    for requirement in PYPROJECT["project"]["dependencies"]:
        name, bound = _requirement_name_and_bound(requirement)
        assert bound is not None, f"{requirement!r} declares no lower bound"
        if name in ("torch", "triton"):
            continue  # lower bounds from the GPU machine (torch 2.11, triton 3.6); CI runs newer
        assert pins.get(name) == bound, f"constraints.txt pins {name}=={pins.get(name)}, pyproject's lower bound is {bound}"


def test_every_source_package_is_mapped_into_the_rnnbench_namespace():
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for folder, package in SUBPACKAGE_FOLDERS.items():
        assert mapping[package] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            dotted = ".".join((package, *relative.parts))
            assert dotted in packages, f"{init.parent} is not listed in pyproject's packages as {dotted}"
    assert all(package == "rnnbench" or package.startswith("rnnbench.") for package in packages)


def test_sources_import_only_rnnbench_names():
    offenders = []
    for folder in ("rnnbench", *SUBPACKAGE_FOLDERS, "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.strip()
                for name in SUBPACKAGE_FOLDERS:
                    if stripped.startswith((f"from {name} ", f"from {name}.", f"import {name}")):
                        offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert not offenders, "imports outside the rnnbench namespace:\n" + "\n".join(offenders)


@pytest.fixture(scope="module")
def distributions(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist, built from this checkout with the standard ``build`` frontend."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def test_wheel_installs_only_the_rnnbench_package_with_its_suites_and_license(distributions):
    names = zipfile.ZipFile(distributions["wheel"]).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"rnnbench"}
    for needed in ("rnnbench/__main__.py", "rnnbench/kernels/lstm_kernels.py", "rnnbench/baselines/numpy_rnn.py",
                   "rnnbench/harness/cli.py", "rnnbench/harness/suites/smoke.toml"):
        assert needed in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not [name for name in names if "/tests/" in name or name.startswith(("tests/", "reports/", "benchmarks/"))]


def test_sdist_holds_sources_license_and_readme_but_no_tests_or_results(distributions):
    with tarfile.open(distributions["sdist"]) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    for needed in ("LICENSE", "README.md", "pyproject.toml", "rnnbench/__init__.py", "kernels/plan.py",
                   "harness/suites/cpu.toml", "baselines/drop_in.py"):
        assert needed in names
    for unwanted in ("tests/", "reports/", "benchmarks/", ".ci/", "Makefile"):
        assert not [name for name in names if name.startswith(unwanted)], f"sdist contains {unwanted}"


TINY_SUITE = """
description = "installed-wheel check"
[defaults]
device = "cpu"
modes = ["fwd_bwd"]
[[cases]]
experiments = ["numerics"]
backends = ["numpy", "torch"]
families = ["lstm"]
seq_len = [3]
batch = [2]
hidden_size = [4]
"""


def test_wheel_works_beside_another_module_named_kernels(distributions, tmp_path):
    """A fresh virtual environment that already has a top-level ``kernels`` module (as Hugging
    Face's hub kernels would install) gets the wheel; both stay importable, and the command runs a
    suite from a directory outside the repository. The dependencies come from the test's own
    environment through a ``.pth`` file, so nothing is downloaded; that they satisfy the wheel's
    declared requirements is checked explicitly."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies-of-the-test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site / "kernels").mkdir()
    (site / "kernels" / "__init__.py").write_text('OWNER = "another project"\n')
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TRITON_INTERPRET")}
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(distributions["wheel"])],
                   check=True, env=env, capture_output=True, text=True)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()

    def run(*args: str) -> str:
        done = subprocess.run([*args], cwd=workdir, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    probe = textwrap.dedent("""
        import importlib.metadata as metadata, kernels, rnnbench.kernels
        from packaging.requirements import Requirement
        print(kernels.OWNER)
        print(rnnbench.kernels.__file__)
        for text in metadata.requires("rnnbench"):
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                version = metadata.version(requirement.name)
                assert requirement.specifier.contains(version, prereleases=True), (text, version)
    """)
    owner, location = run(str(python), "-c", probe).splitlines()[:2]
    assert owner == "another project"
    assert Path(location).is_relative_to(site), f"rnnbench.kernels imported from {location}, not the installed wheel"
    assert run(str(venv / "bin" / "rnnbench"), "--version").strip() == f"rnnbench {_version()}"
    assert "smoke" in run(str(venv / "bin" / "rnnbench"), "list")
    (workdir / "tiny.toml").write_text(TINY_SUITE)
    run(str(python), "-m", "rnnbench", "run", "tiny.toml", "--out", "out", "--no-progress")
    results = (workdir / "out" / "results.csv").read_text().splitlines()
    assert len(results) == 3 and all(",ok," in line for line in results[1:])


def _version() -> str:
    namespace: dict = {}
    for line in (ROOT / "rnnbench" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            exec(line, namespace)
    return namespace["__version__"]
