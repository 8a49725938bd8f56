"""The command line: --help answers without torch, every option says what it does and its
default, and the package imports lazily."""

import argparse
import os
import subprocess
import sys

import pytest
from conftest import modules_loaded_by

from jams_pyg.cli import COMMANDS, build_parser

HELP = """
import contextlib, io
from jams_pyg.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main([*{command!r}, "--help"])
    except SystemExit as stop:
        assert stop.code in (0, None), stop.code
assert out.getvalue().startswith("usage: jams-pyg"), out.getvalue()[:200]
"""


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS), ["prepare", "mimiciv"]])
def test_help_imports_nothing_heavy(command):
    assert modules_loaded_by(HELP.format(command=command)) == []


def _parsers(parser: argparse.ArgumentParser, name: str = "jams-pyg"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_has_help_and_shows_its_default():
    parsers = dict(_parsers(build_parser()))
    assert {f"jams-pyg {c}" for c in COMMANDS} <= set(parsers)
    for name, parser in parsers.items():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help) > 10, f"{where}: no help text"
            if action.option_strings and action.default not in (None, False, []):
                # shown as "(default: X)" by HelpFormatter, or said in the help itself
                assert "default" in action.help or f"(default: {action.default})" in \
                    " ".join(text.split()), f"{where}: default {action.default!r} not shown"


def test_train_laat_example_is_the_train_command():
    result = subprocess.run([sys.executable, "examples/train_laat.py", "--help"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: jams-pyg train")


def test_package_import_is_lazy_and_names_resolve():
    assert modules_loaded_by("import jams_pyg") == []
    import jams_pyg
    from jams_pyg import MATConv

    assert MATConv.__module__ == "jams_pyg.nn.mat_conv"
    assert set(jams_pyg.__all__) <= set(dir(jams_pyg))
    for name in jams_pyg.__all__:
        assert getattr(jams_pyg, name) is not None, name


def test_unknown_name_is_an_attribute_error():
    import jams_pyg

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        jams_pyg.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("package", ["icd", "graph", "nn", "models", "data", "train", "eval",
                                     "inference"])
def test_every_subpackage_name_resolves(package):
    import importlib

    module = importlib.import_module(f"jams_pyg.{package}")
    assert module.__all__ and sorted(module.__all__) == sorted(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None, f"jams_pyg.{package}.{name}"


@pytest.mark.parametrize(("argv", "usage", "hint"), [
    (["train", "--epocs", "3"], "usage: jams-pyg train", "--epocs: did you mean --epochs?"),
    (["predict", "notes.txt", "--model", "m", "--topk", "3"], "usage: jams-pyg predict",
     "--topk: did you mean --top-k?"),
    (["prepare", "mimiciv", "raw", "out", "--min-cnt", "3"], "usage: jams-pyg prepare mimiciv",
     "--min-cnt: did you mean --min-count?"),
])
def test_a_mistyped_option_shows_its_commands_usage_and_the_closest_option(
        argv, usage, hint, capsys):
    from jams_pyg.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err[:200]
    assert hint in err and "unrecognized arguments" in err


def test_an_unknown_word_without_a_close_option_gets_no_guess(capsys):
    from jams_pyg.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--zzzzzz"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_line_sets_openmp_passive_waiting_unless_the_user_chose(
        preset, expected, monkeypatch):
    from jams_pyg.cli import main

    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", preset)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert os.environ["OMP_WAIT_POLICY"] == expected


def test_the_verbatim_command_runs_torch_with_passive_waiting():
    # The variable must be in place before torch (OpenMP) loads: a subprocess without it
    # runs a command whose handler reports what torch's process saw.
    code = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None)\n"
            "import jams_pyg.cli.synthetic as s\n"
            "def run(args):\n"
            "    import torch  # noqa: F401\n"
            "    print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
            "    return 0\n"
            "s.run = run\n"
            "from jams_pyg.cli import main\n"
            "raise SystemExit(main(['synthetic', 'out']))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True)
    assert result.stdout.split() == ["PASSIVE", "True"]


@pytest.mark.parametrize(("command", "argv", "hint"), [
    ("train", ["--output-dir", "out"], "--resume"), ("synthetic", ["out"], None)])
def test_ctrl_c_is_one_line_with_a_resume_hint_for_train(command, argv, hint, monkeypatch,
                                                         capsys):
    import importlib

    from jams_pyg.cli import main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(f"jams_pyg.cli.{command}"), "run", interrupted)
    assert main([command, *argv]) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"jams-pyg {command}: interrupted") and len(err.splitlines()) == 1
    assert (hint in err) if hint else "--resume" not in err
