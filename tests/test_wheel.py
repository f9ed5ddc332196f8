"""A new user's path: build the wheel, install it into a fresh virtual environment, and use `muomni` from a folder
outside the checkout. The configs must come from the installed package and the outputs land in the home folder.

The fresh environment reuses this one's packages (torch and the rest) through a .pth line instead of installing them
again; a .pth line adds a folder to the path without running that folder's own .pth files, so the editable install
of the checkout is not on it, and PYTHONPATH is dropped: what imports as `muomni` is the wheel's copy."""
import json, os, shutil, subprocess, sys, sysconfig
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.wheel


def run(*cmd, cwd, env, timeout=300):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    "(python of a fresh venv with the wheel installed, an environment for it without PYTHONPATH, a folder outside the repo)."
    import setuptools
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} cannot read pyproject.toml's license field; the dev extra "
                    "(pip install -e '.[dev]') brings setuptools>=77")
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MUOMNI_HOME", "VIRTUAL_ENV")}
    src = tmp / "src"                                   # a copy: building in the checkout would leave build/ and egg-info
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "muomni", "configs"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    shutil.rmtree(src / "muomni" / "__pycache__", ignore_errors=True)
    build_env = dict(env, PYTHONPATH=str(Path(setuptools.__file__).parents[1]))       # the setuptools checked above
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp / "dist", src,
        cwd=tmp, env=build_env)
    wheel, = (tmp / "dist").glob("muomni-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp, env=env)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp, env=env).stdout.strip())
    (site / "shared_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")       # torch & co., not the checkout
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp, env=env)
    outside = tmp / "elsewhere"
    outside.mkdir()
    return python, env, outside


def test_the_wheel_is_what_imports(installed):
    python, env, outside = installed
    r = run(python, "-c", "import muomni, muomni.core as c; print(muomni.__file__); print(c.config_dir()); print(c.find_checkout())",
            cwd=outside, env=env)
    module, configs, checkout = r.stdout.split()
    site = python.parent.parent
    assert Path(module).is_relative_to(site) and not Path(module).is_relative_to(ROOT), module
    assert Path(configs) == Path(module).parent / "configs" and (Path(configs) / "thinker_tiny.json").is_file()
    assert checkout == "None"


def test_help_states_the_home(installed):
    python, env, outside = installed
    muomni = python.parent / "muomni"
    r = run(muomni, "--help", cwd=outside, env=env)
    assert "~/.muomni" in r.stdout and "MUOMNI_HOME" in r.stdout and "train-text" in r.stdout
    r = run(muomni, "--help", cwd=outside, env=dict(env, MUOMNI_HOME=str(outside / "home")))
    assert f"(now:{outside / 'home'})" in "".join(r.stdout.split())                 # the one in use (help text is wrapped)


def test_train_text_outside_the_checkout(installed):
    "The book's first command, from a folder that is no checkout: configs from the package, outputs in the home."
    from muomni import data as D
    python, env, outside = installed
    home = outside / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "shakespeare").symlink_to(D.fetch_shakespeare().parent, target_is_directory=True)   # no second download
    r = run(python.parent / "muomni", "train-text", "--config", "configs/thinker_tiny.json", "--preset", "smoke",
            "--max_steps", "2", cwd=outside, env=dict(env, MUOMNI_HOME=str(home)))
    metrics = json.loads(r.stdout[r.stdout.index("{"):])
    assert metrics["preset"] == "smoke" and metrics["steps"] == 2
    saved = home / "checkpoints" / "thinker_smoke"
    assert (saved / "final.pt").is_file() and json.loads((saved / "metrics.json").read_text())["steps"] == 2
    assert not (outside / "checkpoints").exists() and not (outside / "configs").exists()
    r = subprocess.run([str(python.parent / "muomni"), "chat", "--home", str(home), "--text", "hi"], cwd=outside, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"no trained Omni in {home / 'checkpoints'}" in r.stderr, r.stderr
