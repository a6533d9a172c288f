"""Everything about the package is in pyproject.toml; this file only adds one build step."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

# Packages written by `buf generate`, which empties gen/ before writing it, so their PEP 561
# marker cannot be kept there: it is added to the build instead.
GENERATED_TYPED_PACKAGES = ["assignment.v1"]


class BuildPyMarkingGeneratedTyped(build_py):
    """build_py that also marks the generated packages typed (their .pyi stubs ship with them)."""

    def run(self) -> None:
        super().run()
        for package in GENERATED_TYPED_PACKAGES:
            directory = os.path.join(self.build_lib, *package.split("."))
            if not os.path.isdir(directory):
                raise RuntimeError("generated package %s is missing: run `npx buf generate`" % package)
            with open(os.path.join(directory, "py.typed"), "w", encoding="utf-8"):
                pass


setup(cmdclass={"build_py": BuildPyMarkingGeneratedTyped})
