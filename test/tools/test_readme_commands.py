"""The README's commands, extracted from its fenced code blocks, run as written (issue 16).

Every ```bash line is classified by its program:

- ``liquid-controller SUB ...``: the exact arguments are parsed by SUB's real argument parser (an
  unknown option or a missing value fails here, not on a user's terminal), the repository files it
  names (models/..., config/...) must exist, and ``liquid-controller SUB --help`` is run. The command
  itself is not run when SUB is in LONG (minutes of simulation, training or a whole bag; the reason
  is in the table); any other SUB is run as written, with a time limit.
- ``make TARGET``: the target is a rule of the Makefile and every VAR=value is a Makefile variable
  (not run: it builds the venv or runs the whole suite).
- ``ros2 run|launch``: the executable is a console script / the launch file exists and every
  ``name:=value`` is a declared launch argument (not run: ros2cli and launch are not on PyPI).
- ``python -m MODULE``: the module exists and ``--help`` runs.
- ``torchrun ... PATH/liquid-controller SUB ...``: torchrun's options are parsed by torch's own launcher
  parser and the liquid-controller part as above (not run: it trains).
- ``ray start ...``: the ``ray`` command of the cluster extra exists and ``ray start --help`` runs (not run:
  it starts a cluster).
Any other program fails the test with a request to classify it here, so a new README command is
never silently unchecked. ```python blocks are executed in a fresh interpreter (they are short).
Placeholders (BAG) stay as written; ``[...]`` optional parts are parsed with their brackets removed;
``for V in A B ...; do CMD; done`` checks CMD with V = A.
"""
import ast
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from liquid_controller.paths import share_dir

ROOT = share_dir()
README = ROOT / 'README.md'

# Subcommands whose README invocations are parsed and checked but not executed, and why.
LONG = {
    'demo': 'drives the simulator with the controller for minutes (test/tools/test_cli_demo.py runs it short)',
    'bringup': 'starts the nodes and runs until Ctrl-C (test/launch/test_bringup_tool.py runs it)',
    'record': 'records minutes of driving (test/tools/test_cli_bags.py records a few seconds)',
    'train': 'trains a network on recorded bags (test/tools/test_cli_train.py trains a tiny one)',
    'evaluate': 'closed-loop laps in the simulator, minutes per scene',
    'compare': 'evaluates three models on four scenes, tens of minutes',
    'replay': 'needs a recorded bag (BAG is a placeholder); test/replay runs replays',
    'play': 'needs a recorded bag (BAG) and plays it until the end or Ctrl-C',
    'explain': 'needs a recorded bag (BAG) and a simulator run; test/explain runs it small',
    'bench': 'runs every benchmark, minutes',
    'benchmark': 'runs a benchmark, minutes',
    'scenes': 'builds and renders scenes; test/tools/test_cli_scenes.py runs it',
    'export': 'exports a model file; test/tools/test_cli_export.py runs it',
    'calibrate-ood': 'streams bags of driving through a model; test/replay/test_replay_ood.py runs it',
}
MAKE_REASON = 'builds .venv, runs the whole suite or drives the simulator for minutes'
ROS2_REASON = 'ros2cli and the launch packages are not on PyPI'
OUTPUT_OPTIONS = {'--out', '--readme', '--train-bench', '--json'}   # values written, not read


def fenced_blocks(text):
    """[(language, body)] of the ``` fenced blocks (tolerant of sections added by others)."""
    return [(m.group(1).strip().lower(), m.group(2))
            for m in re.finditer(r'^```([^\n`]*)\n(.*?)^```', text, flags=re.M | re.S)]


def bash_commands(body):
    """Commands of a bash block as token lists: continuations joined, comments dropped, simple
    ``for V in A ...; do CMD; done`` loops reduced to CMD with V = A."""
    commands = []
    for line in body.replace('\\\n', ' ').splitlines():
        tokens = shlex.split(line, comments=True)
        if not tokens:
            continue
        text = shlex.join(tokens)
        loop = re.fullmatch(r'for (\w+) in (\S+)(?: \S+)*?; do (.+); done', ' '.join(tokens).replace(' ;', ';'))
        if loop is None and tokens[0] == 'for':
            loop = re.fullmatch(r'for (\w+) in (\S+).*?do (.+?);? done', line.split('#')[0].strip())
        if loop is not None:
            var, first, cmd = loop.groups()
            tokens = shlex.split(cmd.replace(f'${{{var}}}', first).replace(f'${var}', first))
        elif tokens[0] == 'for':
            raise AssertionError(f'README loop not understood: {text}')
        commands.append(tokens)
    return commands


def readme_commands():
    text = README.read_text()
    return [tokens for lang, body in fenced_blocks(text) if lang in ('bash', 'sh', 'shell', 'console')
            for tokens in bash_commands(body)]


def _unbracket(tokens):
    """Optional parts written as [--loop] or [--baseline X]: keep the content, drop the brackets."""
    return [t.strip('[]') for t in tokens if t.strip('[]')]


def _ids(commands):
    return [' '.join(c)[:60] for c in commands]


COMMANDS = readme_commands()


def test_readme_has_commands_and_every_one_is_classified():
    assert len(COMMANDS) >= 10
    known = {'liquid-controller', 'make', 'ros2', 'python', 'python3', 'torchrun', 'ray'}
    unknown = [' '.join(c) for c in COMMANDS if c[0] not in known]
    assert not unknown, f'classify these README commands in {__file__}: {unknown}'


@pytest.mark.parametrize('tokens', [c for c in COMMANDS if c[0] == 'liquid-controller'],
                         ids=_ids([c for c in COMMANDS if c[0] == 'liquid-controller']))
def test_liquid_controller_commands_parse_and_name_existing_files(tokens, capsys):
    from liquid_controller.cli import TOOLS, build_parser, main
    argv = _unbracket(tokens[1:])
    assert argv and argv[0] in TOOLS, f'unknown subcommand in README: {shlex.join(tokens)}'
    sub = argv[0]
    try:
        build_parser([sub]).parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f'README command does not parse (exit {exc.code}): {shlex.join(tokens)}\n'
                    f'{capsys.readouterr().err}')
    for prev, arg in zip(argv, argv[1:]):
        if prev not in OUTPUT_OPTIONS and re.match(r'(models|config)/\S+\.(json|ya?ml)$', arg):
            assert (ROOT / arg).is_file(), f'{arg} (in README: {shlex.join(tokens)}) does not exist'
    with pytest.raises(SystemExit) as exc:
        main([sub, '--help'])
    assert exc.value.code == 0
    assert sub in capsys.readouterr().out
    if sub in LONG:
        pytest.skip(f'parsed and --help run; not executed: {LONG[sub]}')
    proc = subprocess.run([sys.executable, '-m', 'liquid_controller.cli', *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f'{shlex.join(tokens)}:\n{proc.stdout}\n{proc.stderr}'


@pytest.mark.parametrize('tokens', [c for c in COMMANDS if c[0] == 'make'],
                         ids=_ids([c for c in COMMANDS if c[0] == 'make']))
def test_make_targets_and_variables_exist(tokens):
    makefile = (ROOT / 'Makefile').read_text()
    targets = set(re.findall(r'^([A-Za-z][\w-]*):', makefile, flags=re.M))
    for arg in tokens[1:]:
        if '=' in arg:
            var = arg.split('=', 1)[0]
            assert re.search(rf'\b{re.escape(var)}\b', makefile), f'make variable {var} is not used'
        else:
            assert arg in targets, f'make {arg}: no such target (have {sorted(targets)})'
    pytest.skip(f'target checked; not executed: {MAKE_REASON}')


def _declared_launch_arguments():
    tree = ast.parse((ROOT / 'launch' / 'bringup.launch.py').read_text())
    return {ast.literal_eval(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', None) == 'DeclareLaunchArgument'}


def _console_scripts():
    text = (ROOT / 'setup.py').read_text()
    return set(re.findall(r"'([\w-]+) = liquid_controller[\w.]*:\w+'", text))


@pytest.mark.parametrize('tokens', [c for c in COMMANDS if c[0] == 'ros2'],
                         ids=_ids([c for c in COMMANDS if c[0] == 'ros2']))
def test_ros2_commands_name_real_executables_and_arguments(tokens):
    verb, package = tokens[1], tokens[2]
    assert package == 'liquid_controller', shlex.join(tokens)
    if verb == 'run':
        assert tokens[3] in _console_scripts(), f'{tokens[3]} is not a console script'
    elif verb == 'launch':
        assert (ROOT / 'launch' / tokens[3]).is_file(), tokens[3]
        declared = _declared_launch_arguments()
        for arg in tokens[4:]:
            if ':=' in arg:
                assert arg.split(':=')[0] in declared, f'launch argument {arg} is not declared'
    else:
        pytest.fail(f'unknown ros2 verb in README: {shlex.join(tokens)}')
    pytest.skip(f'names checked; not executed: {ROS2_REASON}')


@pytest.mark.parametrize('tokens', [c for c in COMMANDS if c[0] in ('python', 'python3')],
                         ids=_ids([c for c in COMMANDS if c[0] in ('python', 'python3')]))
def test_python_module_commands(tokens):
    assert tokens[1] == '-m', shlex.join(tokens)
    assert importlib.util.find_spec(tokens[2]) is not None, tokens[2]
    proc = subprocess.run([sys.executable, '-m', tokens[2], '--help'], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize('tokens', [c for c in COMMANDS if c[0] == 'torchrun'],
                         ids=_ids([c for c in COMMANDS if c[0] == 'torchrun']))
def test_torchrun_commands_parse(tokens):
    from torch.distributed.run import get_args_parser

    from liquid_controller.cli import build_parser
    at = next(i for i, t in enumerate(tokens) if t.endswith('liquid-controller'))
    args = get_args_parser().parse_args(tokens[1:at + 1])        # the launcher's own options
    assert args.training_script.endswith('liquid-controller')
    assert (ROOT / tokens[at]).is_file() or tokens[at].startswith('/'), f'{tokens[at]} does not exist'
    build_parser([tokens[at + 1]]).parse_args(tokens[at + 1:])
    pytest.skip('torchrun and liquid-controller options parsed; not executed: it trains')


@pytest.mark.parametrize('tokens', [c for c in COMMANDS if c[0] == 'ray'],
                         ids=_ids([c for c in COMMANDS if c[0] == 'ray']))
def test_ray_commands_exist(tokens):
    ray = Path(sys.executable).with_name('ray')
    if not ray.is_file():
        pytest.skip('ray is an optional extra (pip install .[cluster]) and is not installed here')
    proc = subprocess.run([str(ray), *tokens[1:2], '--help'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pytest.skip('ray start --help runs; not executed: it starts a cluster')


PYTHON_BLOCKS = [body for lang, body in fenced_blocks(README.read_text()) if lang in ('python', 'py')]


@pytest.mark.parametrize('index', range(len(PYTHON_BLOCKS)))
def test_python_blocks_run(index, tmp_path):
    proc = subprocess.run([sys.executable, '-c', PYTHON_BLOCKS[index]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f'README python block {index}:\n{PYTHON_BLOCKS[index]}\n{proc.stderr}'


def test_extraction_handles_loops_continuations_comments_and_brackets():
    body = ('for s in 0 1 2; do liquid-controller record --seed $s --out out/s$s; done\n'
            'liquid-controller explain --model m.json \\\n    --bag BAG   # a comment\n\n'
            '# only a comment\n')
    assert bash_commands(body) == [['liquid-controller', 'record', '--seed', '0', '--out', 'out/s0'],
                                   ['liquid-controller', 'explain', '--model', 'm.json', '--bag', 'BAG']]
    assert _unbracket(['play', 'BAG', '[--loop]']) == ['play', 'BAG', '--loop']
    blocks = fenced_blocks('text\n```bash\nmake test\n```\nmore\n```python\nprint(1)\n```\n')
    assert blocks == [('bash', 'make test\n'), ('python', 'print(1)\n')]
