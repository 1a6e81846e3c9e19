"""The layer rule of the architecture: a lower layer never imports a higher one, with no exceptions.

Order (docs in README "Layout"): policy (1) < safety (2) < runtime (3) < sim (4) < messages (5) < data,
train, evaluation, explain, testing (6) < ros (7) < tools, cli (8). errors, paths, config_base and
validation are shared foundations below every layer. The nodes (ros/) sit above everything they adapt:
the simulator (sim_node), bags (the DDS bag player and recorder) and the runtime (controller_node).
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / 'liquid_controller'
LEVEL = {'errors': 0, 'paths': 0, 'config_base': 0, 'validation': 0, 'policy': 1, 'safety': 2,
         'runtime': 3, 'sim': 4, 'messages': 5, 'data': 6, 'train': 6, 'evaluation': 6, 'explain': 6,
         'testing': 6, 'ros': 7, 'tools': 8, 'cli': 8}


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
            if target in LEVEL and LEVEL[target] > LEVEL[part]:
                violations.append(f'{rel} imports liquid_controller.{target}')
    assert not violations, '\n'.join(violations)


def test_every_package_folder_has_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith('__')}
    assert folders <= set(LEVEL), folders - set(LEVEL)
