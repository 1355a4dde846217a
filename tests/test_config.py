"""The one precision setting: configs written while ``amp`` was a setting of its own (config.json
files, checkpoints, recipes, the --amp flag) load and mean what they meant, and the engine's
autocast choice follows ``precision`` alone."""

from __future__ import annotations

import json

import pytest
import torch

from ssd_core import TrainConfig
from ssd_core.checkpoint import load_checkpoint, save_checkpoint
from ssd_core.cli import _train_setup
from ssd_core.cli_args import build_parser
from ssd_core.config import FIELDS, PRECISIONS
from ssd_core.engine.setup import autocast_dtype
from ssd_core.errors import ConfigError
from ssd_core.model import TinySSD
from ssd_core.recipes import Recipe

CUDA, CPU = torch.device("cuda"), torch.device("cpu")  # a device object needs no GPU


def test_one_knob_with_five_choices():
    assert "amp" not in FIELDS and PRECISIONS == ("auto", "fp32", "bf16", "fp16", "fast")
    assert TrainConfig().precision == "auto"


@pytest.mark.parametrize("precision, with_amp", [("auto", "fp16"), ("fp32", "fp32"),
                                                 ("bf16", "bf16"), ("fast", "fast"),
                                                 ("fp16", "fp16")])
def test_old_amp_on_is_fp16_unless_a_precision_was_chosen_and_amp_off_changes_nothing(
        precision, with_amp):
    nested = TrainConfig().to_dict()
    for flat in (False, True):
        base = TrainConfig().flat() if flat else dict(nested)
        on = TrainConfig.from_dict({**base, "amp": True, "precision": precision})
        off = TrainConfig.from_dict({**base, "amp": False, "precision": precision})
        assert on.precision == with_amp
        assert off.precision == ("auto" if precision == "fp16" else precision)
    # amp on with the default precision was fp16 on CUDA and fp32 elsewhere: so it is still
    on = TrainConfig.from_dict({"amp": True, "precision": "auto"})
    assert autocast_dtype(on, CUDA) is torch.float16 and autocast_dtype(on, CPU) is None


def test_an_explicit_precision_wins_over_the_old_amp_flag():
    """An old run that chose bf16 (or fast) and also had amp on trained bf16 on a CPU (amp
    counted on CUDA only): it stays bf16 (not fp16, which is fp32 on a CPU)."""
    for precision in ("bf16", "fast"):
        old = {**json.loads(TrainConfig().to_json()), "amp": True, "precision": precision}
        config = TrainConfig.from_json(json.dumps(old))
        assert config.precision == precision
        for device in (CUDA, CPU):  # as a run that chose it today, amp or not
            assert autocast_dtype(config, device) is autocast_dtype(
                TrainConfig(precision=precision), device)
    bf16 = TrainConfig.from_dict({"amp": True, "precision": "bf16"})
    assert autocast_dtype(bf16, CPU) is autocast_dtype(bf16, CUDA) is torch.bfloat16
    assert TrainConfig.from_dict({"amp": True}).precision == "fp16"  # no precision written


def test_an_old_config_json_and_the_shipped_one_load():
    old = json.loads(TrainConfig().to_json())
    old["amp"] = True
    assert TrainConfig.from_json(json.dumps(old)).precision == "fp16"
    with pytest.raises(ConfigError, match="amp"):
        TrainConfig.from_dict({"amp": "yes"})
    assert TrainConfig.from_dict({"precision": "fp16", "amp": False}).precision == "auto"


def test_an_old_checkpoint_loads_with_the_precision_it_meant(tmp_path):
    path = save_checkpoint(tmp_path / "old.pt", TinySSD(1), TrainConfig(), ["banana"])
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    config["amp"] = True
    payload["config"] = json.dumps(config)
    torch.save(payload, path)
    assert load_checkpoint(path).config.precision == "fp16"


def test_an_old_recipe_and_the_old_cli_flag(tmp_path):
    assert Recipe("old", settings={"amp": True}).config().precision == "fp16"
    parser = build_parser()
    out = ["--synthetic", "4", "--out", str(tmp_path)]
    for flags, want in ((["--amp"], "fp16"), (["--no-amp"], "auto"),
                        (["--precision", "bf16", "--no-amp"], "bf16"),
                        (["--precision", "bf16", "--amp"], "bf16"),
                        (["--precision", "fp16"], "fp16"), ([], "auto")):
        config = _train_setup(parser.parse_args(["train", *out, *flags]))[0]
        assert config.precision == want, flags


def test_autocast_follows_precision_alone():
    want = {("auto", CUDA): torch.bfloat16, ("auto", CPU): None,
            ("fp32", CUDA): None, ("fp32", CPU): None,
            ("bf16", CUDA): torch.bfloat16, ("bf16", CPU): torch.bfloat16,
            ("fp16", CUDA): torch.float16, ("fp16", CPU): None}
    for (precision, device), dtype in want.items():
        assert autocast_dtype(TrainConfig(precision=precision), device) is dtype
    # "fast" (bf16 where the hardware has it) is tested in tests/test_device_data.py.


def test_one_flattening_for_nested_and_flat_config_files():
    from ssd_core.config import flat_settings

    config = TrainConfig.from_dict({"box_loss": "smooth_l1", "lr": 0.05})
    nested, flat = config.to_dict(), config.flat()
    assert "loss" in nested and "loss" not in flat and flat["box_loss"] == "smooth_l1"
    assert flat_settings(nested) == flat_settings(flat) == flat  # an older run's file is flat
    assert TrainConfig.from_dict(flat_settings(nested)) == config
