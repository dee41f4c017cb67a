"""The docs' command lines run: every tfvae command they show passes only flags it has.

Each command line in README.md and docs/**/*.md (fenced code blocks, with lines continued by a
trailing backslash, and inline `...` spans) that calls a tfvae command (`tfvae-NAME`,
`python tools/NAME.py`, `python -m tfvae.train`) is checked against that command's flags:
`tfvae.cli.NAME.FLAG_DEFINITIONS`, plus the training flags (Config fields, --max_steps, --export)
for the commands that read a trained run (`common.command(..., reads_run=True)`). Deprecated
aliases do not count: the docs use the current names. Every `--flagfile=PATH` named must exist.
No TensorFlow is needed for this, except where a command module imports it at module level.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import functools
import importlib
import inspect
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
README_MAX_LINES = 150  # the README stays a front page; everything else lives in docs/
IWAE_TRAINING = "python -m tfvae.train --flagfile=configs/iwae.flags"
IWAE_EVALUATION = "python tools/bpp.py --k=2000"
ALWAYS_ACCEPTED = {"help", "helpfull", "flagfile"}
SHELL_OPERATOR = re.compile(r"[();<>|&]+")
FLAG = re.compile(r"--([A-Za-z0-9_]+)(=(.*))?$", re.S)
PLACEHOLDER = re.compile(r"[A-Z]{2,}|[<>$*]|\.\.\.")  # TUNE_DIR, OUT, MODEL_DIR, PATH, $VAR


def _doc_files() -> list[str]:
    docs = [README]
    for directory, _, names in os.walk(os.path.join(ROOT, "docs")):
        docs += [os.path.join(directory, n) for n in names if n.endswith(".md")]
    return sorted(docs)


def _relative(path: str) -> str:
    return os.path.relpath(path, ROOT)


# ------------------------------------------------------------------------- finding commands


@dataclasses.dataclass(frozen=True)
class Snippet:
    """Shell text in a doc: a code-block line (continuations joined) or an inline span."""

    line: int  # 1-based line of the doc where it starts
    text: str


INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def _blocks_and_prose(text: str) -> tuple[list[Snippet], str]:
    """Code-block lines (trailing-backslash continuations joined), and the text outside code
    blocks with each block's lines blanked (so offsets still give line numbers)."""
    lines = text.splitlines()
    found, outside = [], []
    in_block, i = False, 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(("```", "~~~")):
            in_block = not in_block
            outside.append("")
        elif in_block:
            start, joined = i, line
            while joined.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                joined = joined.rstrip()[:-1] + " " + lines[i].strip()
                outside.append("")
            found.append(Snippet(start + 1, joined))
            outside.append("")
        else:
            outside.append(line)
        i += 1
    return found, "\n".join(outside)


def _inline_spans(prose: str):
    for match in INLINE_CODE.finditer(prose):
        if "\n\n" not in match.group(2):  # a stray backtick: inline code never spans paragraphs
            yield match


def snippets(text: str) -> list[Snippet]:
    """Code-block lines (continuations joined) and inline `...` spans, in the order of the doc."""
    found, prose = _blocks_and_prose(text)
    for match in _inline_spans(prose):
        span = re.sub(r"\\?\n", " ", match.group(2))
        found.append(Snippet(prose.count("\n", 0, match.start()) + 1, span))
    return sorted(found, key=lambda snippet: snippet.line)


def _tokens(text: str) -> list[str]:
    """Shell words of `text` (quotes removed, operators apart, a # comment dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: prose in backticks, not a command
        words = text.split()
    for i, word in enumerate(words):
        if word.startswith("#"):
            return words[:i]
    return words


def _command_at(words: list[str], i: int) -> tuple[str | None, int, str | None]:
    """(command name, words it takes, problem) for a tfvae command starting at words[i]."""
    word = words[i]
    script = re.fullmatch(r"tfvae-([a-z][a-z0-9-]*)", word)
    if script:
        name = script.group(1).replace("-", "_")
        problem = None if word in _console_scripts() else f"`{word}` is no console script"
        return name, 1, problem
    if os.path.basename(word) not in ("python", "python3") or i + 1 >= len(words):
        return None, 0, None
    tool = re.fullmatch(r"(?:\./)?tools/([a-z_0-9]+)\.py", words[i + 1])
    if tool:
        name = tool.group(1)
        exists = os.path.exists(os.path.join(ROOT, "tools", f"{name}.py"))
        return name, 2, None if exists else f"`tools/{name}.py` does not exist"
    if words[i + 1] == "-m" and i + 2 < len(words) and words[i + 2].startswith("tfvae"):
        module = words[i + 2]
        name = {"tfvae.train": "train"}.get(module)
        if module.startswith("tfvae.cli."):
            name = module[len("tfvae.cli.") :]
        return name or module, 3, None if name else f"`python -m {module}` is no tfvae command"
    return None, 0, None


@dataclasses.dataclass(frozen=True)
class CommandLine:
    line: int
    command: str  # the cli module's name: train, bpp, compare_upsampling, ...
    args: tuple[str, ...]
    problem: str | None  # the command itself does not exist


def command_lines(text: str) -> list[CommandLine]:
    """Every call of a tfvae command in a doc's text, with the words passed to it."""
    calls = []
    for snippet in snippets(text):
        words = _tokens(snippet.text)
        i = 0
        while i < len(words):
            name, width, problem = _command_at(words, i)
            if name is None:
                i += 1
                continue
            j = i + width
            while j < len(words) and not SHELL_OPERATOR.fullmatch(words[j]):
                j += 1
            calls.append(CommandLine(snippet.line, name, tuple(words[i + width : j]), problem))
            i = j
    return calls


# --------------------------------------------------------------------- what a command takes


@functools.cache
def _console_scripts() -> frozenset[str]:
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    entries = parser.get("options.entry_points", "console_scripts", fallback="")
    return frozenset(line.split("=")[0].strip() for line in entries.splitlines() if "=" in line)


@dataclasses.dataclass(frozen=True)
class Accepted:
    own: dict  # flag name -> is boolean
    training: dict  # the training flags a reads_run command also takes (name -> is boolean)
    aliases: dict  # deprecated name -> current name (not accepted in the docs)


def _command_keywords(module) -> dict:
    """The keyword arguments of the module's `common.command(...)` call, evaluated in it."""
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "command":
            expressions = {kw.arg: ast.Expression(kw.value) for kw in node.keywords if kw.arg}
            return {
                name: eval(compile(expression, module.__name__, "eval"), vars(module))
                for name, expression in expressions.items()
            }
    raise AssertionError(f"{module.__name__} makes no common.command(...)")


@functools.cache
def accepted(name: str) -> Accepted:

    from tfvae import config as config_lib
    from tfvae.cli import common

    module = importlib.import_module(f"tfvae.cli.{name}")
    definitions = module.FLAG_DEFINITIONS
    own = {n: definitions[n].boolean for n in definitions}
    keywords = _command_keywords(module)
    training = {}
    if keywords.get("reads_run"):
        fv = common.training_flag_values()
        training = {n: fv[n].boolean for n in fv}
    aliases = {**config_lib.DEPRECATED_FLAGS, **(keywords.get("aliases") or {})}
    return Accepted(own, training, aliases)


def _is_placeholder(path: str) -> bool:
    return bool(PLACEHOLDER.search(path)) or path.startswith(("runs/", "/", "~"))


def _brace_expanded(path: str) -> list[str]:
    """configs/upsampling_{deconv,nearest}.flags -> both paths (the shell's brace expansion)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not match:
        return [path]
    head, tail = path[: match.start()], path[match.end() :]
    return [p for part in match.group(1).split(",") for p in _brace_expanded(head + part + tail)]


def problems(call: CommandLine) -> list[str]:
    """One line per flag of `call` its command does not take, or flagfile that is missing."""
    shown = "tfvae-" + call.command.replace("_", "-")
    if call.problem:
        return [call.problem]
    take = accepted(call.command)
    found = []
    for word in call.args:
        match = FLAG.match(word.strip("[]"))
        if not match:
            continue
        flag, value = match.group(1), match.group(3)
        if flag == "flagfile" and value is not None and not _is_placeholder(value):
            for path in _brace_expanded(value):
                if not os.path.isfile(os.path.join(ROOT, path)):
                    found.append(f"`--flagfile={path}`: no such file in the repository")
        if flag in take.aliases:  # first, as the command reads it (bpp's --batch_size)
            found.append(
                f"`--{flag}` is a deprecated alias in {shown}; use `--{take.aliases[flag]}`"
            )
            continue
        if flag in ALWAYS_ACCEPTED or flag in take.own or flag in take.training:
            continue
        base = flag[2:] if flag.startswith("no") else None
        if base and (take.own.get(base) or take.training.get(base)):
            continue  # --noFLAG of a boolean
        found.append(f"`--{flag}` is not a flag of {shown}")
    return found


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("doc", _doc_files(), ids=_relative)
def test_command_lines_pass_only_flags_their_command_has(doc):
    with open(doc) as f:
        calls = command_lines(f.read())
    bad = [
        f"{_relative(doc)}:{call.line}: {problem}" for call in calls for problem in problems(call)
    ]
    assert not bad, "flags the docs pass that their command does not take:\n" + "\n".join(bad)


def test_the_checker_finds_bad_flags():
    text = """
Evaluate with `python tools/bpp.py --model_dir=DIR --num_examples=5 --batch_size=5` or:

```bash
tfvae-bpp --model_dir=runs/x --k=5 \\
    --epochs=3 --nope=1   # --epochs: a training flag, checked against config.json
python -m tfvae.train --flagfile=configs/none.flags --nojit_compile && tfvae-nope --k=1
python tools/loss_curves.py --model_dirs=a,b --k=5
```
"""
    calls = command_lines(text)
    assert [(c.line, c.command) for c in calls] == [
        (2, "bpp"), (5, "bpp"), (7, "train"), (7, "nope"), (8, "loss_curves"),
    ]  # fmt: skip
    assert [p for c in calls for p in problems(c)] == [
        "`--num_examples` is a deprecated alias in tfvae-bpp; use `--num_images`",
        "`--batch_size` is a deprecated alias in tfvae-bpp; use `--eval_batch_size`",
        "`--nope` is not a flag of tfvae-bpp",
        "`--flagfile=configs/none.flags`: no such file in the repository",
        "`tfvae-nope` is no console script",
        "`--k` is not a flag of tfvae-loss-curves",  # not a reads_run command
    ]


def test_every_command_module_is_checked():
    """Each console script has its cli module, and every module's flags can be read."""
    for script in _console_scripts():
        name = script[len("tfvae-") :].replace("-", "_")
        assert accepted(name).own, f"{script}: tfvae.cli.{name} defines no flags"


def test_readme_is_a_front_page():
    with open(README) as f:
        count = len(f.read().splitlines())
    assert count < README_MAX_LINES, (
        f"README.md has {count} lines; keep it under {README_MAX_LINES} (move detail to docs/)"
    )


def test_readme_keeps_the_ci_test_command_and_the_quick_start():
    with open(README) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = [line.strip() for line in f if line.strip().startswith("python -m pytest")]
    assert ci, ".ci/run runs no `python -m pytest` line"
    for line in ci:
        assert line in readme, f"README.md lacks .ci/run's test command `{line}`"
    quick_start = "pip install -e . && python -m tfvae.train --flagfile=configs/quickstart.flags"
    assert quick_start in readme


def test_the_iwae_path_is_documented():
    """Train the report's IWAE and measure its log-likelihood: shown as typed."""
    text = ""
    for doc in _doc_files():
        with open(doc) as f:
            text += f.read()
    for line in (IWAE_TRAINING, IWAE_EVALUATION):
        assert line in text, f"no doc shows `{line}`"


@pytest.mark.parametrize("doc", _doc_files(), ids=_relative)
def test_links_resolve(doc):
    """Images and relative links point at files that exist (from the doc's own folder)."""
    with open(doc) as f:
        _, text = _blocks_and_prose(f.read())
    for match in _inline_spans(text):  # code is not a link: blank it, keeping line numbers
        text = text[: match.start()] + re.sub(r"[^\n]", " ", match.group(0)) + text[match.end() :]
    missing = []
    for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
        target = match.group(1).split("#")[0]
        if not target or re.match(r"[a-z]+:", target):  # an anchor or a URL
            continue
        if not os.path.exists(os.path.join(os.path.dirname(doc), target)):
            line = text.count("\n", 0, match.start()) + 1
            missing.append(f"{_relative(doc)}:{line}: {target}")
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


def test_the_architecture_page_names_every_module_in_its_rooms_row():
    """docs/architecture.md has a row per room; each module of the room is named in it (the
    commands of cli/ by the row's "one module per command")."""
    with open(os.path.join(ROOT, "docs", "architecture.md")) as f:
        rows = dict(re.findall(r"^\| `(\w+)/` \| (.*)$", f.read(), re.M))
    package = os.path.join(ROOT, "tfvae")
    missing = [
        f"{room}/{name}"
        for room in sorted(os.listdir(package))
        if os.path.exists(os.path.join(package, room, "__init__.py"))
        for name in sorted(os.listdir(os.path.join(package, room)))
        if name.endswith(".py")
        and name != "__init__.py"
        and (room != "cli" or name == "common.py")
        and f"`{name[:-3]}`" not in rows.get(room, "")
    ]
    assert missing == []
