"""The layer rule of the architecture: a lower layer never imports a higher one.

Order (docs in README "Layout"): policy (1) < safety (2) < runtime (3) < ros (4) < sim (5) < data, train,
evaluation, explain, testing (6) < tools, cli (7). errors, paths and config_base are shared foundations below every layer.
One exception is named by the architecture itself: the simulator bridge lives in ros/ and wraps the
sim/ world (the bridge node, and the demo's observer of the simulator's ground truth).
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / 'liquid_controller'
LEVEL = {'errors': 0, 'paths': 0, 'config_base': 0, 'policy': 1, 'safety': 2, 'runtime': 3, 'ros': 4,
         'sim': 5, 'data': 6, 'train': 6, 'evaluation': 6, 'explain': 6, 'testing': 6, 'tools': 7,
         'cli': 7}
ALLOWED = {('ros/sim_node.py', 'sim'), ('ros/episode_monitor.py', 'sim')}


def _part(path):
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix('.py'), rel.as_posix()


def _imported_parts(tree):
    for node in ast.walk(tree):  # every import, including lazy ones inside functions
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split('.')
            if parts[0] == 'liquid_controller' and len(parts) > 1:
                yield parts[1]


def test_no_module_imports_a_higher_layer():
    violations = []
    for path in sorted(PACKAGE.rglob('*.py')):
        part, rel = _part(path)
        if part == '__init__':
            continue
        for target in _imported_parts(ast.parse(path.read_text())):
            if target in LEVEL and LEVEL[target] > LEVEL[part] and (rel, target) not in ALLOWED:
                violations.append(f'{rel} imports liquid_controller.{target}')
    assert not violations, '\n'.join(violations)


def test_every_package_folder_has_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith('__')}
    assert folders <= set(LEVEL), folders - set(LEVEL)
