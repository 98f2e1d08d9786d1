import json
from pathlib import Path

import pytest
import torch

from training import state
from training.state import load_train_state, save_train_state, saved_progress


def make() -> tuple[torch.nn.Linear, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 / (s + 1))


def test_optimizer_scheduler_and_rng_restored(tmp_path: Path) -> None:
    model, optimizer, scheduler = make()
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    save_train_state(tmp_path, optimizer, scheduler, None, {"epoch": 3, "best": 0.5})
    expected_next = torch.rand(3)
    _, fresh_opt, fresh_sched = make()
    progress = load_train_state(tmp_path, fresh_opt, fresh_sched, None)
    assert progress == {"epoch": 3, "best": 0.5}
    assert fresh_sched.last_epoch == 3 and fresh_opt.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    for a, b in zip(optimizer.state.values(), fresh_opt.state.values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert torch.equal(torch.rand(3), expected_next)


def test_the_model_weights_travel_with_a_stopped_epoch(tmp_path: Path) -> None:
    model, optimizer, scheduler = make()
    with torch.no_grad():
        model.weight.add_(1.0)
    progress = {"epoch": 0, "partial": {"epoch": 1, "steps": 2}}
    save_train_state(tmp_path, optimizer, scheduler, None, progress, model)
    fresh, fresh_opt, fresh_sched = make()
    assert not torch.equal(fresh.weight, model.weight)
    assert saved_progress(tmp_path) == {**progress, "has_model": True}
    assert load_train_state(tmp_path, fresh_opt, fresh_sched, None, fresh) == progress
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)
    named = json.loads((tmp_path / "state.json").read_text())["tensors_file"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", named]


def test_a_state_without_weights_leaves_the_model_alone(tmp_path: Path) -> None:
    model, optimizer, scheduler = make()
    save_train_state(tmp_path, optimizer, scheduler, None, {"epoch": 1})
    with torch.no_grad():
        model.weight.add_(1.0)
    before = model.weight.clone()
    assert saved_progress(tmp_path)["has_model"] is False
    load_train_state(tmp_path, optimizer, scheduler, None, model)
    assert torch.equal(model.weight, before)


def step(model: torch.nn.Linear, optimizer: torch.optim.Optimizer) -> None:
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()


def test_a_save_killed_before_it_commits_leaves_the_earlier_save_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, optimizer, scheduler = make()
    step(model, optimizer)
    save_train_state(tmp_path, optimizer, scheduler, None, {"epoch": 1}, model)
    saved_weight = model.weight.detach().clone()
    step(model, optimizer)

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt  # after the new tensors are written, before state.json names them

    with monkeypatch.context() as patch:
        patch.setattr(state, "write_text", killed)
        with pytest.raises(KeyboardInterrupt):
            save_train_state(tmp_path, optimizer, scheduler, None, {"epoch": 2}, model)
    assert len(list(tmp_path.glob("tensors*.safetensors"))) == 2  # the new tensors, not yet named
    fresh, fresh_opt, fresh_sched = make()
    assert load_train_state(tmp_path, fresh_opt, fresh_sched, None, fresh) == {"epoch": 1}
    assert torch.equal(fresh.weight, saved_weight)  # the weights of the save it names, not the newer
    save_train_state(tmp_path, optimizer, scheduler, None, {"epoch": 2}, model)
    assert len(list(tmp_path.glob("tensors*.safetensors"))) == 1  # the unnamed ones deleted


def test_a_state_saved_before_tensors_files_were_named_still_loads(tmp_path: Path) -> None:
    model, optimizer, scheduler = make()
    save_train_state(tmp_path, optimizer, scheduler, None, {"epoch": 4}, model)
    document = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / document.pop("tensors_file")).rename(tmp_path / "tensors.safetensors")
    (tmp_path / "state.json").write_text(json.dumps(document))
    fresh, fresh_opt, fresh_sched = make()
    with torch.no_grad():
        fresh.weight.add_(1.0)
    assert load_train_state(tmp_path, fresh_opt, fresh_sched, None, fresh) == {"epoch": 4}
    assert torch.equal(fresh.weight, model.weight)
