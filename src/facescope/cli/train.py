"""`facescope train` and `facescope export` (both need the `train` extra: PyTorch)."""

from __future__ import annotations

from pathlib import Path

import typer

from facescope.data.loaders import FORMATS
from facescope.model import BACKBONE_NAMES


def train_command(
    data: list[str] | None = typer.Option(None, "--data", metavar="PATH",
                                          help=f"dataset folder or CSV: {', '.join(FORMATS)} (detected from the "
                                               "path); repeat to train on several at once"),
    output: Path = typer.Option(None, "--output", "-o", help="run folder (default runs/train)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of training options"),
    backbone: str | None = typer.Option(None, help=" | ".join(BACKBONE_NAMES)),
    input_size: int | None = typer.Option(None, help="crop size in pixels (default: the backbone's)"),
    epochs: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    lr: float | None = typer.Option(None),
    balance: str | None = typer.Option(None, help="none | sampler | loss: race x gender groups drawn equally "
                                                   "often or weighed equally; gender | gender_sampler: women and "
                                                   "men weighed the same, or drawn equally often, within each data set"),
    splits: str | None = typer.Option(None, help="reuse a split manifest (from `facescope data split` or a run)"),
    seed: int | None = typer.Option(None),
    max_images: int | None = typer.Option(None, help="train on a seeded sample of N training images (quick runs)"),
    augment: bool | None = typer.Option(None, "--augment/--no-augment"),
    pretrained: bool | None = typer.Option(None, "--pretrained/--no-pretrained"),
    init: str | None = typer.Option(None, "--init", help="start from trained weights: a run's checkpoint (e.g. "
                                                         "runs/train/checkpoints/best, to fine-tune at a larger size) "
                                                         "or an installed model's name or bundle folder"),
    resume: bool = typer.Option(False, "--resume", help="go on from the run folder's last checkpoint"),
) -> None:
    """Train the multi-task network (gender, race, age) and export an inference bundle.

    Options given here override the --config file's. The run folder gets the split manifest, checkpoints,
    the training history, the exported bundle and its evaluation report. Needs the `train` extra.

    \b
    Examples:
      facescope train --data ../shared/data/utkface --config configs/default.yaml -o runs/mine
      facescope train --data ../shared/data/utkface --max-images 2000 --epochs 1 -o runs/quick
      facescope train -o runs/mine --resume
    """
    from facescope.training.config import TrainConfig
    from facescope.training.train import train

    several = (data[0] if len(data) == 1 else data) if data else None
    overrides = dict(data=several, output=str(output) if output else None, backbone=backbone, input_size=input_size,
                     epochs=epochs, batch_size=batch_size, lr=lr, balance=balance, splits=splits, seed=seed,
                     max_images=max_images, augment=augment, pretrained=pretrained, init=init)
    train_config = TrainConfig.load(config, **overrides)
    if not train_config.data and not train_config.splits:
        raise typer.BadParameter("give --data (or --splits, or data: in the config)")
    bundle = train(train_config, resume=resume)
    typer.echo(f"bundle: {bundle}")


def export_command(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="a run's checkpoint, e.g. runs/train/checkpoints/best"),
    output: Path = typer.Option(..., "--output", "-o", metavar="DIR", help="bundle folder to write"),
    name: str | None = typer.Option(None, help="model name in model.json"),
    mirror: bool = typer.Option(False, "--mirror/--no-mirror",
                                help="average each crop's outputs with its mirror image's: twice the network's "
                                     "work for a little accuracy (see the README's default-model section)"),
    int8: bool = typer.Option(False, "--int8", help="quantize the convolutions to int8 (the default model's network: 3.3x as fast on CPU), "
                                                    "calibrated on crops of the run's own training split"),
    calibration_crops_count: int = typer.Option(512, "--calibration-crops", help="how many training crops calibrate --int8"),
) -> None:
    """Export a checkpoint as an inference bundle (model.onnx + model.json).

    \b
    Examples:
      facescope export runs/mine/checkpoints/best -o my-bundle --name my-model
      facescope export runs/mine/checkpoints/best -o my-bundle --int8
      facescope predict group.jpg --model my-bundle
    """
    from facescope.faces.align import Framing
    from facescope.model.export import export_bundle
    from facescope.training.checkpoints import load_trained_model
    from facescope.training.data import calibration_crops
    from facescope.training.run_folder import RunFolder

    model, state = load_trained_model(checkpoint)
    calibration = None
    if int8:
        splits = RunFolder(Path(checkpoint).parent.parent).splits
        try:
            calibration = calibration_crops(splits, calibration_crops_count, state["input_size"],
                                            Framing.from_json(state["framing"]))
        except (FileNotFoundError, ValueError) as error:  # no split manifest, or no training faces in it
            raise typer.BadParameter(f"--int8 calibrates on the run's training split, and {error}",
                                     param_hint="CHECKPOINT") from error
    bundle = export_bundle(model, output, state, name=name, mirror=mirror, calibration_crops=calibration)
    typer.echo(f"bundle: {bundle}")
