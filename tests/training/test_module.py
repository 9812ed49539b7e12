import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hyperfusion.training.module import FusionModule, predict_views


class TinyFusion(nn.Module):
    """A small real network with the registry's interface (image (B,1,4,4,4), tabular (B,F))."""

    def __init__(self, n_tabular=3, n_out=3):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.head = nn.Linear(2 + n_tabular, n_out)

    def forward(self, image, tabular):
        feats = self.conv(image).mean(dim=(2, 3, 4))
        return self.head(torch.cat([feats, tabular], dim=1))


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    tab = torch.randn(n, 3, generator=g) + 2.0 * nn.functional.one_hot(y, 3).float()
    image = torch.randn(n, 1, 4, 4, 4, generator=g)
    return image, tab, y


def test_predict_views_averages_softmax_over_views():
    torch.manual_seed(0)
    net = TinyFusion().eval()
    image = torch.randn(5, 2, 1, 4, 4, 4)
    tab = torch.randn(5, 3)
    both = predict_views(net, image, tab, "ad")
    manual = (net(image[:, 0], tab).softmax(-1) + net(image[:, 1], tab).softmax(-1)) / 2
    torch.testing.assert_close(both, manual)
    one = predict_views(net, image[:, 0], tab, "ad")
    torch.testing.assert_close(one, net(image[:, 0], tab).softmax(-1))


def test_training_learns_and_selects_on_balanced_accuracy(tmp_path):
    L.seed_everything(0, workers=True)
    module = FusionModule(TinyFusion(), task="ad", lr=1e-2)
    assert module.monitor == ("val_balanced_accuracy", "max")
    train = DataLoader(TensorDataset(*_data(192, 1)), batch_size=32, shuffle=True)
    image, tab, y = _data(96, 2)
    val = DataLoader(TensorDataset(image.unsqueeze(1).repeat(1, 2, 1, 1, 1, 1), tab, y), batch_size=32)
    trainer = L.Trainer(
        max_epochs=8,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    before = module.loss(module(image, tab), y).item()
    trainer.fit(module, train, val)
    module.eval()
    after = module.loss(module(image, tab), y).item()
    assert after < before * 0.7
    assert trainer.callback_metrics["val_balanced_accuracy"] > 0.75


def test_brain_age_task_uses_mse_and_mae():
    module = FusionModule(TinyFusion(n_tabular=2, n_out=1), task="brain_age")
    assert module.lr == pytest.approx(1.5e-4) and module.weight_decay == pytest.approx(0.05)
    out = torch.tensor([[70.0], [60.0]])
    assert module.loss(out, torch.tensor([72.0, 60.0])).item() == pytest.approx(2.0)
    ages = predict_views(module.network.eval(), torch.randn(2, 1, 1, 4, 4, 4), torch.eye(2), "brain_age")
    assert ages.shape == (2,)
    assert np.isfinite(ages.detach().numpy()).all()
