"""spartan-deploy: SpaRTAN from PyTorch training form to fast, verified inference artefacts.

Importing the package is cheap: heavy and optional parts (ONNX Runtime, Model Optimizer,
TensorRT) are imported by the stages that need them.
"""

__version__ = "0.1.0"
