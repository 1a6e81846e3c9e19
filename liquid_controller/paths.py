"""Where the package's installed data lives (config/, launch/, models/).

Installed the ROS way (colcon or a wheel), data files are in ``share/liquid_controller`` found through
the ament index. An editable install from a source checkout does not copy data files, so the source
tree (the folder holding package.xml next to this package) is used instead.
"""
from pathlib import Path

PACKAGE = 'liquid_controller'


def share_dir():
    """Return the directory holding package.xml, config/, launch/ and models/."""
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / 'package.xml').is_file():
        return source_root
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # PackageNotFoundError, or ament_index missing entirely
        raise FileNotFoundError(
            f'cannot locate the {PACKAGE} share directory: not in a source tree and the ament index '
            f'does not know the package (is AMENT_PREFIX_PATH set?): {exc}') from exc


def config_file(name):
    """Path of a file in config/."""
    return share_dir() / 'config' / name


def models_dir():
    """The folder of shipped model files."""
    return share_dir() / 'models'
