"""ament_python package description of suhd_ros."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "suhd_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")
                                      + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*.safetensors") + glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="suhd_ros developers",
    maintainer_email="suhd-ros@example.com",
    description="Spiking (SUHD) YOLOv5 object detector for ROS 2 with energy diagnostics.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "suhd_detector = suhd_ros.ros.node_main:detector",
            "suhd_camera = suhd_ros.ros.node_main:camera",
            "suhd-convert = suhd_ros.tools.convert:main",
            "suhd-detect = suhd_ros.tools.detect:main",
            "suhd-eval = suhd_ros.tools.evaluate:main",
            "suhd-train = suhd_ros.tools.train:main",
            "suhd-demo = suhd_ros.tools.demo:main",
            "suhd-dds-check = suhd_ros.tools.dds_check:main",
            "suhd-export = suhd_ros.tools.export:main",
            "suhd-bag = suhd_ros.tools.bag:main",
        ],
    },
)
