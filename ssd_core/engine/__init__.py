"""The training engine, split by role: ``trainer`` (the Trainer: the epoch loop, stop, status),
``step`` (one optimizer step), ``batches`` (each epoch's batches), ``setup`` (device, model,
optimizer, autocast, the set on the device), ``init_weights`` (an init checkpoint's weights,
class layers re-made for other classes), ``distributed`` (processes under torchrun),
``records`` (metrics records), ``validation``, ``checkpoints`` (checkpoint.pt and best.pt),
``resume`` (the state a checkpoint needs to continue), ``divergence`` (what a diverged run says)
and ``schedule`` (the learning rate). The files of a run are ssd_core.runfolder's.

The loop is the book's (forward -> multibox_target -> loss -> SGD step), batched and honest about
speed: ``images_per_s`` is measured over whole steps, data loading and target assignment included.

Records yielded by ``Trainer.fit`` (also appended to ``run_dir/metrics.jsonl``), all floats or
ints unless noted: ``kind`` ("step" every ``log_every`` steps, "epoch" at each epoch end), ``step``
(optimizer steps done), ``epoch`` (1-based epoch the record belongs to), ``epochs``,
``steps_per_epoch``, ``total_steps``, ``loss``, ``cls_loss``, ``box_loss``, ``class_error`` and
``box_mae`` (the book's metrics), ``positives_per_image``, ``object_accuracy`` (the class
accuracy over positive anchors, 0.0 without any), ``images`` (images in the window, summed over
processes), ``images_per_s``, ``lr``, ``elapsed`` (s of training so far), ``eta_s``,
``world_size``; epoch records add ``epoch_time`` and, with validation data, ``val_ap50``,
``val_map`` (left out when the validation images hold no objects) and ``val_per_class``
({class name: AP50, None for a class without objects}). No record ever holds NaN.

Run folder (names and status schema in ssd_core.runfolder): the config, the metrics, the latest
(resumable) checkpoint, the best validation AP50's and the status with the step reached.

Several processes: under ``torchrun`` (``WORLD_SIZE`` > 1) the Trainer joins a process group
(gloo on CPU, nccl on CUDA), wraps the model in DistributedDataParallel, splits every epoch with a
DistributedSampler, all-reduces the metrics and lets rank 0 alone write files and validate.
BatchNorm statistics stay per process (``sync_bn=False``): each process sees ``batch_size``
images, enough for stable statistics, and SyncBatchNorm would add a collective per BN layer
(10 per step) - slow over gloo. Set ``sync_bn=True`` for small per-process batches on GPUs.
"""

from ssd_core.engine.trainer import Trainer

__all__ = ["Trainer"]
