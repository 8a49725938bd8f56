"""The README's snippets run as written (in a folder laid out as the default run leaves it)."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON = re.findall(r"```python\n(.*?)```", README, re.S)
# The shell lines that use what the default run writes (the install commands are CI's).
SHELL = [line for block in re.findall(r"```bash\n(.*?)```", README, re.S)
         for line in block.splitlines()
         if line.startswith("jams-pyg ") and "outputs/laat/" in line]


@pytest.fixture(scope="module")
def default_run_folder(tmp_path_factory) -> Path:
    """``outputs/laat/data`` (a small synthetic corpus) and ``outputs/laat/jams/model`` (the
    golden LAAT+JAMS bundle), as ``python examples/train_laat.py`` leaves them."""
    from jams_pyg.data.synthetic import generate_synthetic_corpus

    folder = tmp_path_factory.mktemp("readme")
    generate_synthetic_corpus(folder / "outputs/laat/data", seed=0, size=0.05)
    shutil.copytree(ROOT / "tests/golden/bundle", folder / "outputs/laat/jams/model")
    shutil.copy(ROOT / "tests/golden/notes.txt", folder / "notes.txt")
    return folder


def test_readme_has_snippets():
    assert len(PYTHON) >= 3 and SHELL


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(PYTHON)))
def test_python_snippet_runs_verbatim(number, default_run_folder):
    result = subprocess.run([sys.executable, "-c", PYTHON[number]], cwd=default_run_folder,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"snippet {number}:\n{PYTHON[number]}\n{result.stderr}"


def printed_comments(snippet: str) -> list[str]:
    """What a snippet says it prints: the comment lines right after each ``print(...)``
    line, joined into one line each."""
    return [" ".join(line[2:] for line in block.splitlines())
            for block in re.findall(r"^print\(.*\)\n((?:# .*\n)+)", snippet, re.M)]


@pytest.mark.slow
def test_api_tour_prints_what_the_readme_says(tmp_path):
    snippet = next(s for s in PYTHON if "GEMGraph.from_cms_2018()" in s)
    expected = printed_comments(snippet)
    assert len(expected) == 2  # the graph with procedure links, then diagnoses only
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


@pytest.mark.slow
@pytest.mark.parametrize("line", SHELL)
def test_shell_line_runs_verbatim(line, default_run_folder):
    args = shlex.split(line.split(" > ")[0].split("  #")[0])
    assert args[0] == "jams-pyg"
    result = subprocess.run([sys.executable, "-m", "jams_pyg", *args[1:]],
                            cwd=default_run_folder, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{line}\n{result.stderr}"


@pytest.mark.slow
def test_corpus_table_is_what_the_synthetic_command_prints(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jams_pyg", "synthetic", str(tmp_path / "corpus"), "--size",
         "default"], capture_output=True, text=True, timeout=600, check=True)
    table = "\n".join(line for line in result.stdout.splitlines()
                      if not line.startswith("wrote ")).rstrip()
    assert "unique codes" in table
    assert f"```text\n{table}\n```" in README, table


def _readme_tables():
    from conftest import load_benchmark

    return load_benchmark("readme_tables", "_readme_tables")


#: README tables that are not results (the command list, the recipe's settings, the layout).
NOT_RESULTS = ("| command | does |", "| setting | real data (default) |", "| step | where |")


def test_every_results_table_is_rendered_from_committed_results():
    """Each results table of the README follows a ``<!-- table: NAME -->`` marker and equals
    what benchmarks/readme_tables.py renders from benchmarks/results/ (a hand-edited number,
    or a result re-run without the README, fails here)."""
    tables = _readme_tables()
    lines = README.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|"))]
    unmarked = [lines[i] for i in starts
                if not lines[i].startswith(NOT_RESULTS)
                and not lines[i - 1].startswith("<!-- table: ")]
    assert not unmarked, unmarked
    names = [name for name, _, _ in tables.marked_tables(README)]
    assert len(names) == len(set(names)) and set(names) == set(tables.SECTIONS)
    assert tables.render_readme(README) == README
    # a hand-edited number of the default-run table's seed-0 LAAT row is put back
    doctored = README.replace("| 92.1 | 52.3 | 91.2 |", "| 92.1 | 52.4 | 91.2 |", 1)
    assert doctored != README and tables.render_readme(doctored) == README
