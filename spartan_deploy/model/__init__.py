"""The SpaRTAN model: configs, the training-form module, checkpoints and complexity.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Checkpoint": "checkpoint", "check_state_dict": "checkpoint", "infer_config": "checkpoint",
    "read_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "BlockWidths": "config", "DEFAULT_MODEL": "config", "DataConfig": "config",
    "MIN_IMG_SIZE": "config", "ModelConfig": "config", "ModelSpec": "config",
    "ResizeRule": "config", "known_models": "config", "resolve_model": "config",
    "LoadedModel": "loading", "load_model": "loading", "validate_img_size": "loading",
    "SpaRTAN": "spartan", "create_model": "spartan",
})
