"""The wheel is one package, ``sluice``, that works on its own.

It is built from the repository's sources, installed into a fresh virtualenv
outside the repository and used from an empty folder. The virtualenv finds the
dependencies in the running interpreter's site-packages through a ``.pth`` line
(installing them would download gigabytes); a plain path line does not run that
folder's own ``.pth`` files, so the editable ``sluice`` there stays out of reach.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
DIST_INFO = f"sluice-{VERSION}.dist-info"
# The repository's folders and the packages they install as.
FOLDERS = {
    "sluice": "sluice",
    "sluice.components": "components",
    "sluice.orchestration": "orchestration",
    "sluice.pipelines": "pipelines",
    "sluice.schemas": "schemas",
}
NOT_SOURCES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _tree_files(suffix: str) -> set[str]:
    """Paths, as installed under site-packages, of the tree's files ending in ``suffix``."""
    found = set()
    for package, folder in FOLDERS.items():
        for dirpath, dirnames, filenames in os.walk(REPO / folder):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            rel = Path(dirpath).relative_to(REPO / folder).parts
            found.update("/".join((*package.split("."), *rel, f)) for f in filenames if f.endswith(suffix))
    return found


def _tree_packages() -> set[str]:
    found = set()
    for package, folder in FOLDERS.items():
        for dirpath, dirnames, filenames in os.walk(REPO / folder):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            if "__init__.py" in filenames:
                found.add(".".join((package, *Path(dirpath).relative_to(REPO / folder).parts)))
    return found


def test_pyproject_lists_every_package_of_the_tree():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    in_tree = _tree_packages()
    assert listed == in_tree, (
        f"missing from pyproject: {sorted(in_tree - listed)}; not in the tree: {sorted(listed - in_tree)}"
    )


def _run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # From a copy of the sources: an in-tree build reuses build/lib, which keeps
    # modules deleted since an earlier build.
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in FOLDERS.values():
        shutil.copytree(REPO / folder, src / folder, ignore=NOT_SOURCES)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(src)], timeout=600)
    [built] = (root / "dist").glob("sluice-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A virtualenv outside the repository with the wheel installed; ``(venv, names it added)``."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", str(env_dir)], timeout=300)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     env=_clean_env()).stdout.strip())
    before = set(os.listdir(site))
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], env=_clean_env(),
         timeout=300)
    added = set(os.listdir(site)) - before
    # After the install: pip would otherwise see the editable sluice there as installed already.
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_sluice_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(deps)))
    return env_dir, added


def _clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return {**env, **extra}


def _sluice(venv_dir: Path, *args, cwd, timeout=300, **env):
    return subprocess.run([str(venv_dir / "bin" / "sluice"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_clean_env(**env))


def test_wheel_holds_only_the_sluice_package(wheel_names, venv):
    strays = sorted(n for n in wheel_names if not n.startswith(("sluice/", f"{DIST_INFO}/")))
    assert not strays, f"files outside sluice/ in the wheel: {strays}"
    _, added = venv
    assert added == {"sluice", DIST_INFO}


def test_wheel_holds_every_module_schema_and_report_template(wheel_names):
    for suffix in (".py", ".pbtxt", ".j2"):
        missing = sorted(_tree_files(suffix) - wheel_names)
        assert not missing, f"not in the wheel: {missing}"
    assert {"sluice/schemas/penguin.pbtxt", "sluice/schemas/taxi.pbtxt"} <= wheel_names
    assert "sluice/components/reports/templates/base.html.j2" in wheel_names


def test_import_sluice_resolves_inside_the_venv(venv, tmp_path):
    env_dir, _ = venv
    probe = ("import json, sluice, sluice.components, sluice.orchestration, sluice.pipelines, sluice.schemas;"
             "print(json.dumps([m.__file__ for m in (sluice, sluice.components, sluice.orchestration,"
             " sluice.pipelines, sluice.schemas)]))")
    files = json.loads(_run([str(env_dir / "bin" / "python"), "-c", probe], cwd=tmp_path, env=_clean_env(),
                            timeout=300).stdout)
    for file in files:
        assert Path(file).resolve().is_relative_to(env_dir.resolve()), file
        assert not Path(file).resolve().is_relative_to(REPO), file


def test_taxi_without_data_root_is_one_line_naming_it(venv, tmp_path):
    env_dir, _ = venv
    done = _sluice(env_dir, "run", "taxi", "--pipeline-root", str(tmp_path / "root"), cwd=tmp_path)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "data_root" in lines[0], out


USER_COMPONENT = '''\
import json
import os

from sluice import Input, Output, component
from sluice.components.artifacts import Examples, ModelEvaluation


def write_words(words: Output[Examples], text: str = "") -> None:
    os.makedirs(words.split_uri("train"))
    with open(words.path("Split-train", "words.json"), "w") as fh:
        json.dump(text.split(), fh)
    words.split_names = ["train"]


def count_words(words: Input[Examples], evaluation: Output[ModelEvaluation]) -> None:
    with open(words.path("Split-train", "words.json")) as fh:
        count = len(json.load(fh))
    with open(evaluation.path("metrics.json"), "w") as fh:
        json.dump({"overall": {"count": count}, "slices": {}}, fh)


WriteWords = component(write_words, name="WriteWords")
CountWords = component(count_words, name="CountWords")
'''

USER_PIPELINE = '''\
from components.my_comp import CountWords, WriteWords
from pipelines.common import TEXT
from sluice import Pipeline


def create_pipeline(pipeline_root: str = "runs") -> Pipeline:
    words = WriteWords(text=TEXT)
    counted = CountWords(words=words.outputs["words"])
    return Pipeline(name="my_pipe", components=[words, counted], pipeline_root=pipeline_root)
'''


@pytest.fixture
def user_project(tmp_path) -> Path:
    """A project with its own top-level ``pipelines`` and ``components`` packages."""
    project = tmp_path / "project"
    for package in ("pipelines", "components"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("")
    (project / "pipelines" / "common.py").write_text('TEXT = "the quick brown fox"\n')
    (project / "pipelines" / "my_pipe.py").write_text(USER_PIPELINE)
    (project / "components" / "my_comp.py").write_text(USER_COMPONENT)
    return project


@pytest.mark.parametrize("pythonpath", [None, "."], ids=["plain", "PYTHONPATH=."])
def test_user_project_with_its_own_pipelines_and_components_packages_runs(venv, user_project, pythonpath):
    env_dir, _ = venv
    root = user_project / "runs"
    extra = {"PYTHONPATH": pythonpath} if pythonpath else {}
    done = _sluice(env_dir, "run", "pipelines/my_pipe.py", "--pipeline-root", str(root), cwd=user_project, **extra)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    [metrics] = root.glob("my_pipe/CountWords/evaluation/*/metrics.json")
    assert json.loads(metrics.read_text())["overall"]["count"] == 4


@pytest.mark.slow
def test_sluice_run_penguin_from_the_wheel(venv, tmp_path):
    env_dir, _ = venv
    done = _sluice(env_dir, "run", "penguin", "--pipeline-root", str(tmp_path / "root"), cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
