import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from training.data import Target, collate
from training.engine import EpochProgress, autocast_dtype, train_one_epoch
from training.train import parse_args, resolve_config


@pytest.mark.parametrize(
    ("device", "cuda_amp", "cpu_bf16", "expected"),
    [
        ("cuda", True, False, torch.float16),
        ("cuda", False, True, None),  # cpu_bf16 says nothing about CUDA
        ("cpu", True, False, None),  # the CUDA AMP switch says nothing about the CPU
        ("cpu", False, True, torch.bfloat16),
        ("cpu", False, False, None),
    ],
)
def test_autocast_dtype_per_device(
    device: str, cuda_amp: bool, cpu_bf16: bool, expected: torch.dtype | None
) -> None:
    assert autocast_dtype(torch.device(device), cuda_amp=cuda_amp, cpu_bf16=cpu_bf16) == expected


class _Recorder(nn.Module):
    """A one-layer 'detector' that returns a loss dict, as torchvision's do in training mode, and
    records the dtype its matrix product ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.seen: list[torch.dtype] = []

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        out = self.linear(torch.stack(images))  # [B, 1]
        self.seen.append(out.dtype)
        return {"loss_box": (out.float() - 1.0).pow(2).mean()}


@pytest.mark.parametrize(("cpu_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_training_step_runs_in_bfloat16_on_the_cpu_only_when_asked(
    cpu_bf16: bool, expected: torch.dtype
) -> None:
    torch.manual_seed(0)
    model = _Recorder()
    before = model.linear.weight.detach().clone()
    samples: list[tuple[torch.Tensor, Target]] = [(torch.randn(4), {}) for _ in range(6)]
    loader: DataLoader[tuple[torch.Tensor, Target]] = DataLoader(samples, batch_size=2, collate_fn=collate)  # type: ignore[arg-type]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = train_one_epoch(
        model,
        optimizer,
        loader,
        torch.device("cpu"),
        epoch=1,
        show_progress=False,
        cpu_bf16=cpu_bf16,
    )
    assert model.seen == [expected] * 3
    assert model.linear.weight.dtype == torch.float32  # the weights stay float32
    assert not torch.equal(model.linear.weight, before)  # and they learn
    assert stats["loss"] > 0


def test_cpu_bf16_comes_from_the_config_file_or_the_command_line() -> None:
    assert resolve_config(parse_args(["--config", "fast"])).cpu_bf16 is False
    assert resolve_config(parse_args(["--config", "fast", "--cpu-bf16"])).cpu_bf16 is True
    assert (
        resolve_config(parse_args(["--config", "configs/fast96-warm4-mosaic-s9-bf16.yaml"])).cpu_bf16 is True
    )


def _recorder_loader(n: int) -> DataLoader[tuple[torch.Tensor, Target]]:
    samples: list[tuple[torch.Tensor, Target]] = [(torch.full((4,), float(i)), {}) for i in range(n)]
    return DataLoader(samples, batch_size=2, collate_fn=collate)  # type: ignore[arg-type]


def test_a_stopped_epoch_ends_after_the_step_it_was_on_and_its_resumption_adds_up() -> None:
    torch.manual_seed(0)
    model = _Recorder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    done = EpochProgress()
    asked: list[int] = []

    def stop() -> bool:
        asked.append(done.steps)
        return done.steps >= 2

    first = train_one_epoch(
        model,
        optimizer,
        _recorder_loader(10),
        torch.device("cpu"),
        epoch=1,
        show_progress=False,
        progress=done,
        stop=stop,
    )
    assert done.steps == 2 and done.images == 4 and asked == [1, 2]
    assert first["loss"] == pytest.approx(done.sums["loss"] / 2)
    saved = EpochProgress.from_dict(done.to_dict())
    assert saved == done
    rest = _recorder_loader(10)  # stands in for the loader that leaves the first 2 batches out
    means = train_one_epoch(
        model,
        optimizer,
        rest,
        torch.device("cpu"),
        epoch=1,
        show_progress=False,
        progress=saved,
        max_steps=4,
    )
    assert saved.steps == 4 and saved.images == 8 and len(model.seen) == 4
    assert means["loss"] == pytest.approx(saved.sums["loss"] / 4) and means["images_per_s"] > 0
