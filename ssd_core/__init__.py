"""ssd_core: Single Shot MultiBox Detection in PyTorch, following the book chapter.

Every public name is importable from the package itself (``from ssd_core import
multibox_target``); modules are imported lazily so ``import ssd_core`` stays cheap.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    # boxes
    "box_corner_to_center": "boxes",
    "box_center_to_corner": "boxes",
    "box_iou": "boxes",
    "offset_boxes": "boxes",
    "offset_inverse": "boxes",
    # anchors
    "multibox_prior": "anchors",
    "TINYSSD_SIZES": "anchors",
    "TINYSSD_RATIOS": "anchors",
    "anchors_per_pixel": "anchors",
    "feature_map_sizes": "anchors",
    "anchor_layout": "anchors",
    "layout_anchors": "anchors",
    "locate_anchor": "anchors",
    # matching
    "assign_anchor_to_bbox": "matching",
    "multibox_target": "matching",
    "match_anchors": "matching",
    "hard_negative_mask": "matching",
    "AnchorMatch": "matching",
    # detection
    "nms": "suppression",
    "multibox_detection": "detection",
    "Detector": "detection",
    "Detections": "detection",
    "RawOutput": "detection",
    "fold_batchnorm": "fold",
    # model
    "TinySSD": "model",
    "describe": "model",
    # losses
    "l1": "losses",
    "smooth_l1": "losses",
    "cross_entropy_curve": "losses",
    "focal_loss": "losses",
    "ssd_loss": "losses",
    "cls_eval": "losses",
    "bbox_eval": "losses",
    "init_focal_bias": "losses",
    # configuration and checkpoints
    "TrainConfig": "config",
    "LossConfig": "config",
    "FIELDS": "config",
    "Checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "build_model": "checkpoint",
    # training
    "Trainer": "engine",
    "predict_batch": "detection",
    "evaluate_model": "evaluate",
    "write_json_atomic": "fileio",
    # evaluation
    "evaluate_detections": "evaluate",
    "match_detections": "evaluate",
    "average_precision": "evaluate",
    "EvalResult": "evaluate",
    # images and data
    "load_image": "images",
    "image_to_tensor": "images",
    "SyntheticDetection": "data",
    "load_dataset": "data",
    "export_dataset": "data",
    "detection_collate": "data",
    "Augment": "data",
    # the Teach flow's photo sets
    "UserDataset": "userdata",
    "list_datasets": "userdata",
    "import_dataset": "userdata",
    # background jobs
    "JobManager": "jobs",
    "DataSpec": "runs",
    # device
    "default_device": "device",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssd_core' has no attribute {name!r}")
    value = getattr(import_module(f"ssd_core.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
