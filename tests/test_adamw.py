"""mte.adamw against torch.optim.AdamW(fused=True): the same weights and moments bit for bit, step after step."""

import pytest
import torch
from torch import nn

from mte.adamw import FusedAdamW, supported

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def train(device: str, ours: bool, weight_decay: float, unused_head: bool) -> tuple[nn.Module, object]:
    """20 steps of a small net under a decaying lr; `unused_head` leaves one layer without gradients."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 3), nn.Linear(3, 3)).to(device)
    params = list(net.parameters())
    opt = (FusedAdamW(params, 1e-2, weight_decay) if ours
           else torch.optim.AdamW(params, lr=1e-2, weight_decay=weight_decay, fused=True))
    data = torch.Generator().manual_seed(1)
    for step in range(20):
        x = torch.randn(8, 16, generator=data).to(device)
        out = net[:3](x) if unused_head else net(x)
        loss = out.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.param_groups[0]["lr"] = 1e-2 * (20 - step) / 20
        opt.step()
    return net, opt


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("weight_decay", "unused_head"), [(0.0, False), (0.01, True)])
def test_weights_and_moments_equal_torch_fused_adamw(device, weight_decay, unused_head):
    assert supported(torch.device(device))
    a, opt_a = train(device, True, weight_decay, unused_head)
    b, opt_b = train(device, False, weight_decay, unused_head)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
        assert (p in opt_a.state) == (q in opt_b.state)  # no state for a parameter that never had a gradient
        if q in opt_b.state:
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(opt_a.state[p][key], opt_b.state[q][key]), key
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), train(device, True, 0.1, False)[0].parameters(),
                                                     strict=True))  # weight decay does reach the kernel
