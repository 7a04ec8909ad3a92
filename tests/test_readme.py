"""README.md as a user meets it: every ```python block runs as written, and every repository
file it names exists.

A block preceded by an HTML comment `<!-- not run: <reason> -->` (e.g. one that needs a
running server or downloaded weights) is only compiled, not run. The others run each in a
fresh Python process, in an empty directory, with this checkout on PYTHONPATH; they build
full-size models, so running them is a slow test (`pytest -m slow`); compiling them is not.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.processes import ROOT, python_env, require_backends

README = os.path.join(ROOT, "README.md")

_BLOCK = re.compile(r"(?:<!--\s*not run:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?```python\n"
                    r"(?P<code>.*?)^```", re.S | re.M)
# A relative path with a file extension, or ending in "/", not part of a URL or a longer word.
_PATH = re.compile(r"(?<![\w./:~$-])((?:[\w.-]+/)*[\w.-]+\.(?:py|md|json|npz|tsv|ini|cfg|toml|"
                   r"txt|sh|c|h)|(?:[\w.-]+/)+)(?![\w/])")


def readme_text():
    with open(README, encoding="utf-8") as handle:
        return handle.read()


def python_blocks(text):
    """`[(line, code, reason_not_run or None)]` of the ```python blocks of `text`."""
    return [(text.count("\n", 0, match.start("code")) + 1, match.group("code"),
             match.group("reason")) for match in _BLOCK.finditer(text)]


def repository_paths(text):
    """Paths in `text` that name repository files: those under a top-level entry of the
    checkout (e.g. `irevnet_tf/...`, `docs/...`, `setup.py`) and bare `*.md` documents.
    Output names such as `model.keras` or `run_config.json` are not repository files."""
    top_level = set(os.listdir(ROOT)) | {"docs"}
    paths = set()
    for path in _PATH.findall(text):
        first = path.split("/")[0]
        if first in top_level or ("/" not in path and path.endswith(".md")):
            paths.add(path)
    return sorted(paths)


def test_the_parsers_find_what_they_should():
    text = ("Run `python trainers/train.py`; see PAPER.md, docs/x.md and http://a.org/b.md.\n"
            "<!-- not run: needs a server -->\n```python\nclient()\n```\n"
            "```python\nx = 1\n```\n")
    assert python_blocks(text) == [(4, "client()\n", "needs a server"), (7, "x = 1\n", None)]
    found = repository_paths(text)
    assert "trainers/train.py" in found and "PAPER.md" in found and "docs/x.md" in found
    assert not any("a.org" in path for path in found)


def test_every_python_block_compiles():
    blocks = python_blocks(readme_text())
    assert blocks, "README.md has no ```python block"
    for line, code, _ in blocks:
        compile(code, f"README.md:{line}", "exec")


def test_every_named_repository_file_exists():
    missing = [path for path in repository_paths(readme_text())
               if not os.path.exists(os.path.join(ROOT, path))]
    assert not missing, f"README.md names files that are not in the repository: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("line, code, reason", python_blocks(readme_text()),
                         ids=lambda value: f"line{value}" if isinstance(value, int) else "")
def test_python_block_runs(line, code, reason, tmp_path):
    if reason:
        pytest.skip(f"README.md:{line} is marked not run: {reason}")
    env = python_env()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, f"README.md:{line} failed:\n{result.stderr[-3000:]}"
    if line == _library_block()[0]:  # On TensorFlow, the test process's backend.
        assert result.stdout.splitlines()[-1] == LIBRARY_BLOCK_PRINTS, result.stdout


def _library_block():
    """The first block that builds a model: README's library snippet."""
    for line, code, reason in python_blocks(readme_text()):
        if "build_irevnet" in code and not reason:
            return line, code
    raise AssertionError("README.md has no library block (one that calls build_irevnet)")


# The last line README's library snippet prints, on every backend.
LIBRARY_BLOCK_PRINTS = "decode(encode(x)) == x: True"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_library_block_prints_the_same_exactness_on_every_backend(backend, tmp_path):
    """The issue's promise: `KERAS_BACKEND=jax` (or torch) runs README's library snippet
    unchanged and prints the same exactness result as TensorFlow (whose run of it is
    test_python_block_runs')."""
    require_backends(backend)
    line, code = _library_block()
    env = python_env()
    env["KERAS_BACKEND"] = backend
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, f"README.md:{line} on {backend}:\n{result.stderr[-3000:]}"
    assert result.stdout.splitlines()[-1] == LIBRARY_BLOCK_PRINTS, result.stdout
