"""Data every command uses by default, shipped inside the package.

``models/`` (model YAMLs, the bundled checkpoint and its card) and ``calib/`` (calibration
images and their manifest) are links to the repository's top-level folders of the same
names, so the repository keeps one copy and the wheel carries it (setuptools copies what a
link points to). Code finds them through :mod:`spartan_deploy.paths`, never through the
source tree.
"""
