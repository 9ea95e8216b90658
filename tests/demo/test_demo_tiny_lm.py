"""The tiny LM: shapes, parameter layout, causality, and torch.func compatibility."""

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from devinterp_ui.demo import TinyLM, TinyLMConfig, next_token_loss


def test_logits_have_shape_batch_time_vocab():
    config = TinyLMConfig()
    ids = torch.randint(config.vocab_size, (3, config.seq_len))
    assert TinyLM(config)(ids).shape == (3, config.seq_len, config.vocab_size)


def test_parameter_count_is_about_100k():
    n = sum(p.numel() for p in TinyLM().parameters())
    assert n == 106_272


def test_parameter_names_follow_the_documented_layout():
    config = TinyLMConfig()
    shapes = {name: tuple(p.shape) for name, p in TinyLM(config).named_parameters()}
    inner = config.n_heads * config.d_head
    assert shapes["tok_emb.weight"] == (config.vocab_size, config.d_model)
    assert shapes["pos_emb.weight"] == (config.seq_len, config.d_model)
    for i in range(config.n_layers):
        for proj in "qkv":
            assert shapes[f"blocks.{i}.attn.{proj}.weight"] == (inner, config.d_model)
        assert shapes[f"blocks.{i}.attn.o.weight"] == (config.d_model, inner)
        assert shapes[f"blocks.{i}.mlp.fc_in.weight"] == (config.d_mlp, config.d_model)
        assert shapes[f"blocks.{i}.mlp.fc_out.weight"] == (config.d_model, config.d_mlp)
        assert f"blocks.{i}.ln1.weight" in shapes and f"blocks.{i}.ln2.bias" in shapes
    assert shapes["ln_f.weight"] == (config.d_model,)
    assert shapes["unembed.weight"] == (config.vocab_size, config.d_model)
    assert not list(TinyLM(config).buffers())


def test_heads_are_contiguous_blocks_of_q_rows():
    """Zeroing head 1's rows of v and columns of o leaves the output unchanged only together."""
    torch.manual_seed(0)
    config = TinyLMConfig()
    model = TinyLM(config)
    ids = torch.randint(config.vocab_size, (2, 16))
    rows = slice(config.d_head, 2 * config.d_head)
    with torch.no_grad():
        model.blocks[0].attn.o.weight[:, rows] = 0.0
        before = model(ids)
        model.blocks[0].attn.v.weight[rows] += 1.0  # head 1's values: invisible through o
        model.blocks[0].attn.v.bias[rows] += 1.0
        after = model(ids)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_model_is_causal():
    torch.manual_seed(0)
    model = TinyLM()
    ids = torch.randint(32, (1, 32))
    changed = ids.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 32
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :20], model(changed)[:, :20])


def test_sequences_longer_than_seq_len_are_refused():
    model = TinyLM(TinyLMConfig(seq_len=8))
    try:
        model(torch.zeros(1, 9, dtype=torch.long))
    except ValueError as error:
        assert "seq_len 8" in str(error)
    else:
        raise AssertionError("expected ValueError")


def test_functional_call_vmap_over_stacked_params_matches_each_model():
    torch.manual_seed(0)
    models = [TinyLM() for _ in range(3)]
    params, buffers = stack_module_state(models)
    ids = torch.randint(32, (4, 32))
    base = TinyLM().to("meta")

    def logits(p, b):
        return functional_call(base, (p, b), (ids,))

    stacked = vmap(logits)(params, buffers)
    assert stacked.shape == (3, 4, 32, 32)
    with torch.no_grad():
        for i, model in enumerate(models):
            torch.testing.assert_close(stacked[i], model(ids), rtol=1e-5, atol=1e-5)


def test_grad_under_vmap_matches_autograd():
    torch.manual_seed(0)
    models = [TinyLM() for _ in range(2)]
    params, _ = stack_module_state(models)
    ids = torch.randint(32, (4, 32))
    base = TinyLM()

    def loss(p):
        return next_token_loss(lambda x: functional_call(base, p, (x,)), ids).mean()

    grads = vmap(grad(loss))(params)
    next_token_loss(models[1], ids).mean().backward()
    for name, p in models[1].named_parameters():
        torch.testing.assert_close(grads[name][1], p.grad, rtol=1e-4, atol=1e-6)


def test_next_token_loss_is_per_token_cross_entropy():
    torch.manual_seed(0)
    model = TinyLM()
    ids = torch.randint(32, (2, 10))
    losses = next_token_loss(model, ids)
    assert losses.shape == (2, 9)
    expected = torch.nn.functional.cross_entropy(model(ids)[0, 3], ids[0, 4])
    torch.testing.assert_close(losses[0, 3], expected)
