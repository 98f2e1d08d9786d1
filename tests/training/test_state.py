from pathlib import Path

import torch

from training.state import load_train_state, save_train_state


def make() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
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
