"""liquid_controller: liquid neural network driving controller for ROS 2.

Layers (a lower layer never imports a higher one): policy, safety, runtime, ros, sim, data/train,
tools. See README.md and the docstring of each subpackage.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version('liquid_controller')
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = '0+unknown'
