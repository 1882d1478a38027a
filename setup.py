"""msrec packaging. Pinned versions live in requirements.lock (see scripts/bootstrap.sh).

The card's top-level folders (pipeline/, components/, models/, schemas/) are mapped into the one
``msrec`` package, so the wheel's only top-level package is ``msrec`` and nothing named ``models``
or ``pipeline`` lands in site-packages. Needs setuptools >= 64 (editable installs of mapped folders).
"""
from setuptools import find_packages, setup

# top-level folder -> its package inside msrec
MAPPED = {"pipeline": "msrec.pipeline", "components": "msrec.components", "models": "msrec.models",
          "schemas": "msrec.schemas"}

packages = find_packages(include=["msrec", "msrec.*"])
package_dir = {"msrec": "msrec"}
for folder, package in MAPPED.items():
    for sub in [""] + find_packages(where=folder):
        name = package + ("." + sub if sub else "")
        packages.append(name)
        package_dir[name] = folder + ("/" + sub.replace(".", "/") if sub else "")

setup(
    name="msrec",
    version="0.1.0",
    description="Multi-scenario CTR ranking pipeline on TFX: SAR-Net, HierRec, SFPNet, HMDN, OptMSM",
    packages=packages,
    package_dir=package_dir,
    package_data={"msrec": ["py.typed"], "msrec.schemas": ["*.pbtxt", "*.yaml"]},
    python_requires=">=3.10,<3.11",
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "apache-beam[gcp]==2.59.0",
        "tensorflow-transform==1.16.0",
        "tensorflow-model-analysis==0.47.1",
        "tensorflow-data-validation==1.16.1",
        "ml-metadata==1.16.0",
        "tensorflow-serving-api==2.16.1",
        "tensorflow-recommenders==0.7.7",
        "google-crc32c",
        "pyyaml",
        "matplotlib",
        "tqdm",
    ],
    entry_points={"console_scripts": ["msrec=msrec.cli:main"]},
)
