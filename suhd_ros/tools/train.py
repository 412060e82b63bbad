"""suhd-train: train a ReLU YOLOv5 on the built-in benchmark (or an exported COCO folder).

All options: suhd-train --help. The best weights are written as a model file that
suhd-convert turns into a spiking model.
"""

import sys

from suhd_ros.data.train import main

if __name__ == "__main__":
    sys.exit(main())
