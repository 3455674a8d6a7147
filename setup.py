"""Maps the user's top-level folders onto one import root.

The layout fixed by the design card keeps `shared/`, `services/` and `trainer/` at the top of the
repository. Installed as top-level packages they would collide with the PyPI distributions named
`shared`, `services` and `trainer`, so they are installed as `ghpo.shared`, `ghpo.services` and
`ghpo.trainer` (the same in editable and wheel installs). Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {"ghpo": "ghpo", "ghpo.shared": "shared", "ghpo.services": "services", "ghpo.trainer": "trainer"}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=ROOTS,
    # The tiny model's shipped build (weights, tokenizer, its hint table) travels with the code.
    package_data={"": ["*.lua", "*.jinja", "*.json", "*.toml"], "ghpo.trainer": ["tiny/model/*"]},
)
