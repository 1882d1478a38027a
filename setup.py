"""msrec packaging. Pinned versions live in requirements.lock (see scripts/bootstrap.sh)."""
from setuptools import find_packages, setup

setup(
    name="msrec",
    version="0.1.0",
    description="Multi-scenario CTR ranking pipeline on TFX: SAR-Net, HierRec, SFPNet, HMDN, OptMSM",
    packages=find_packages(include=["msrec", "msrec.*"]),
    package_data={"msrec": ["py.typed"]},
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
        "pyyaml",
        "matplotlib",
        "tqdm",
    ],
    entry_points={"console_scripts": ["msrec=msrec.cli:main"]},
)
