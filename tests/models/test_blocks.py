import pytest
import torch

from hyperfusion.models.blocks import DAFTBlock, FiLMBlock, HyperShortcut, PreActResBlock
from hyperfusion.models.hyper import HyperConv3d, tabular_embedding


def _block(hyper=(), stride=2, c_in=4, c_out=6):
    torch.manual_seed(0)
    return PreActResBlock(
        c_in,
        c_out,
        stride,
        dropout=0.1,
        hyper=hyper,
        embedding=lambda: tabular_embedding(5, 3),
        embedding_dim=3,
    ).eval()


@pytest.mark.parametrize("hyper", [(), ("shortcut",), ("conv1",), ("conv2",), ("conv1", "conv2", "shortcut")])
def test_block_split_matches_forward(hyper):
    block = _block(hyper)
    x, t = torch.randn(3, 4, 6, 8, 6), torch.randn(3, 5)
    with torch.no_grad():
        out = block(x, t)
        assert out.shape == (3, 6, 3, 4, 3)
        torch.testing.assert_close(block.decode(block.encode(x), t), out)
    assert block.reads_condition == bool(hyper)


def test_hyper_shortcut_block_encodes_its_whole_main_branch():
    """With only the shortcut generated, encode runs both 3³ convs; decode runs neither."""
    block = _block(("shortcut",))
    assert isinstance(block.shortcut, HyperShortcut) and isinstance(block.shortcut.conv, HyperConv3d)
    calls = []
    modules = [(n, m) for n, m in block.named_modules() if n]
    hooks = [m.register_forward_hook(lambda *_, n=n: calls.append(n)) for n, m in modules]
    x, t = torch.randn(2, 4, 6, 8, 6), torch.randn(2, 5)
    parts = block.encode(x)
    assert {"conv1", "conv2"} <= set(calls) and not any(n.startswith("shortcut") for n in calls)
    calls.clear()
    block.decode(parts, t)
    assert calls == [
        "shortcut.conv.embedding.0",
        "shortcut.conv.embedding.1",
        "shortcut.conv.embedding.2",
        "shortcut.conv.embedding",
        "shortcut.conv.weight_head",
        "shortcut.conv.bias_head",
        "shortcut.bn",
        "add",
    ]
    for h in hooks:
        h.remove()


def test_hyper_shortcut_order_is_conv_then_batchnorm():
    block = _block(("shortcut",))
    with torch.no_grad():
        block.shortcut.bn.running_mean.fill_(2.0)
        block.shortcut.bn.running_var.fill_(4.0)
    x, t = torch.randn(2, 4, 6, 8, 6), torch.randn(2, 5)
    with torch.no_grad():
        conv_out = block.shortcut.conv(x, t)
        torch.testing.assert_close(
            block.shortcut(x, t), (conv_out - 2.0) / torch.sqrt(torch.tensor(4.0 + 1e-5))
        )


def test_identity_shortcut_and_invalid_hyper_names():
    block = PreActResBlock(4, 4, stride=1).eval()
    x = torch.randn(1, 4, 3, 3, 3)
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(block, name).weight.zero_()
            getattr(block, name).bias.zero_()
        torch.testing.assert_close(block(x), x)
    with pytest.raises(ValueError, match="identity shortcut"):
        PreActResBlock(4, 4, stride=1, hyper=("shortcut",), embedding=lambda: tabular_embedding(5, 3))
    with pytest.raises(ValueError, match="unknown hyper"):
        PreActResBlock(4, 6, hyper=("bn1",), embedding=lambda: tabular_embedding(5, 3))


@pytest.mark.parametrize("block_type", [FiLMBlock, DAFTBlock])
def test_modulated_block_identity_branch_sees_unmodulated_input(block_type):
    torch.manual_seed(0)
    block = block_type(4, 6, n_condition=5).eval()
    x, t = torch.randn(2, 4, 6, 6, 6), torch.randn(2, 5)
    with torch.no_grad():
        block.conv2.weight.zero_()  # silence the main branch: only the shortcut + conv2's bias remain
        expected = block.shortcut(x) + block.conv2.bias.view(1, -1, 1, 1, 1)
        torch.testing.assert_close(block(x, t), expected)
        torch.testing.assert_close(block(x, t + 3.0), expected)


def test_film_scales_and_shifts_per_channel_from_the_record_only():
    torch.manual_seed(0)
    film = FiLMBlock(4, 6, n_condition=5).modulation
    x, t = torch.randn(2, 4, 3, 3, 3), torch.randn(2, 5)
    gamma, beta = film.scale_shift(x, t)
    assert gamma.shape == beta.shape == (2, 4)
    torch.testing.assert_close(film(x, t), gamma.view(2, 4, 1, 1, 1) * x + beta.view(2, 4, 1, 1, 1))
    torch.testing.assert_close(film.scale_shift(x * 5, t)[0], gamma)  # FiLM ignores the image
    assert film.mlp[0].in_features == 5 and film.mlp[0].bias is None and film.mlp[2].out_features == 8


def test_daft_scale_depends_on_the_pooled_image():
    torch.manual_seed(0)
    daft = DAFTBlock(4, 6, n_condition=5).modulation
    assert daft.mlp[0].in_features == 4 + 5
    x, t = torch.randn(2, 4, 3, 3, 3), torch.randn(2, 5)
    assert not torch.allclose(daft.scale_shift(x + 1.0, t)[0], daft.scale_shift(x, t)[0])
    # only the channel means matter: a zero-mean change per channel leaves γ, β unchanged
    bump = torch.zeros_like(x)
    bump[:, :, 0, 0, 0], bump[:, :, 1, 1, 1] = 1.0, -1.0
    torch.testing.assert_close(daft.scale_shift(x + bump, t)[0], daft.scale_shift(x, t)[0])
