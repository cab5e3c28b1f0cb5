"""`workbench <command> --help` explains every option and shows its default."""

import argparse

import pytest

from workbench.cli.main import main


def parsers() -> dict[str, argparse.ArgumentParser]:
    captured = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            main(["run", "x.yaml"])
    finally:
        argparse.ArgumentParser.parse_args = original
    top = captured["parser"]
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


@pytest.mark.parametrize("command", ["init", "run", "runs", "compare", "preview", "push", "pull", "points", "data",
                                     "export", "finetune", "loop"])
def test_every_option_has_help_and_its_default_is_shown(command, capsys):
    parser = parsers()[command]
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, f"workbench {command} {action.option_strings[0]} has no help"
    parser.print_help()
    text = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                and action.default != 0:
            assert f"default: {action.default}" in text or f"default {action.default}" in text \
                or "default" in (action.help or ""), (command, action.option_strings)


def test_the_top_level_help_lists_the_typical_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "the typical order:" in out and "workbench pull runs/demo_complaints" in out
