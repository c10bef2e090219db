"""The one compiled part of the lab: lab/http/_headscan.c (see its opening comment for why).

Everything else is in pyproject.toml; setuptools reads ext_modules only from here. The
extension is optional: where no C compiler is found the lab installs and works, parsing every
request head through httptools' callbacks (slower; `python -m lab serve` says so at start).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lab.http._headscan", ["lab/http/_headscan.c"], extra_compile_args=["-O2"],
                             optional=True)])
