"""Installs the corral package (lib/), the gnt-* commands and the corral-* daemons."""

import glob

from setuptools import find_packages, setup

setup(
    name="corral",
    version="3.1.0",
    description="Cluster virtual server manager compatible with the Ganeti ecosystem",
    python_requires=">=3.11",
    package_dir={"corral": "lib"},
    # Every package under lib/ (the corral package), found rather than listed.
    packages=["corral"] + ["corral." + p for p in find_packages("lib")],
    scripts=sorted(glob.glob("scripts/gnt-*") + glob.glob("daemons/corral-*")),
    install_requires=[
        "httpx>=0.27",
        "uvicorn>=0.30",
        "starlette>=0.37",
        "httptools>=0.6",
        "cryptography>=42",
        "pyOpenSSL>=24",
        "paramiko>=3.4",
        "libvirt-python>=9.0",
        "inotify_simple>=1.3",
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5"]},
)
