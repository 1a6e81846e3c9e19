"""ament_python build script for liquid_controller.

The version is read from package.xml so the two can never disagree.
"""
import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'liquid_controller'
HERE = Path(__file__).parent
VERSION = re.search(r'<version>([^<]+)</version>', (HERE / 'package.xml').read_text()).group(1)


def share(subdir, pattern='*'):
    """Data files of one repository folder, installed into share/<pkg>/<subdir>."""
    files = [f for f in glob(f'{subdir}/{pattern}') if Path(f).is_file()]
    return (f'share/{PACKAGE}/{subdir}', files)


setup(
    name=PACKAGE,
    version=VERSION,
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: ['sim/scenes/*.yaml', 'sim/benchmark_suite/*.yaml', 'sim/benchmark_suite/*/*.yaml',
                           'sim/benchmark_suite/*/*.png', 'sim/stress_suite/*.yaml', 'sim/stress_suite/*/*.yaml',
                           'sim/stress_suite/*/*.png', 'sim/training_scenes/*.yaml',
                           'sim/training_scenes/*/*.yaml', 'sim/training_scenes/*/*.png']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        share('launch', '*.launch.py'),
        share('config', '*.yaml'),
        share('config/gazebo', '*'),
        share('config/foxglove', '*.json'),
        share('models', '*'),
        share('models/baselines', '*'),
    ],
    install_requires=['setuptools'],
    # `pip install .[edge]`: the torch-free runtime (onnx backend) and the embedded simulator;
    # pinned in requirements-edge.txt / constraints.txt (docs/edge.md)
    extras_require={'edge': ['numpy', 'onnxruntime', 'safetensors', 'PyYAML', 'mujoco', 'scipy',
                             'pillow', 'tqdm'],
                    # evaluation and the benchmark fanned out over a Ray cluster (--ray)
                    'cluster': ['ray'],
                    # models exported to ONNX (liquid-controller export)
                    'export': ['onnx', 'onnxruntime']},
    zip_safe=False,
    maintainer='liquid_controller maintainers',
    maintainer_email='maintainers@liquid-controller.dev',
    description='Liquid neural network driving controller with a BarrierNet safety filter.',
    license='Apache-2.0',
    python_requires='>=3.10',
    entry_points={
        'console_scripts': [
            'liquid-controller = liquid_controller.cli:main',
            'controller_node = liquid_controller.ros.controller_node:main',
            'sim_node = liquid_controller.ros.sim_node:main',
        ],
    },
)
