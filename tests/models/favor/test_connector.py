"""The batched connector (shared window projections, frame-block causal attention) equals the slow references: the
per-resolution loop it replaced and one Q-Former call per window."""

import pytest
import torch

from connector_reference import per_resolution_connector, per_window_connector
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.testing.reference import randomized_connector, reference_diversity_loss

# Same weights, same inputs, same process: the batched connector vs one Q-Former call per window (or per
# resolution). Only the fp32 matmul blocking and masked-vs-sliced attention (softmax over padded keys) differ, so the
# summation order changes: 1e-5 on O(1) activations (measured <= 7.2e-7 under every setting of
# tools/check_portability.sh; the diversity losses, O(0.5) means of cosines, <= 1.5e-8).
ATOL = 1e-5
TOKENS_PER_FRAME = 32


def make_connector(seed=0, **overrides):
    # random everything (zero-initialised query tokens would hide bugs)
    return randomized_connector(tiny_favor_config("video_salmonn", **overrides), seed)


def joint_tokens(connector, frame_counts, seed=1):
    g = torch.Generator().manual_seed(seed)
    width = connector.config.joint_feature_size
    tokens = torch.randn(len(frame_counts), max(frame_counts), TOKENS_PER_FRAME, width, generator=g)
    for b, count in enumerate(frame_counts):  # zeros beyond a sample's frames, as the synchroniser produces
        tokens[b, count:] = 0
    return tokens, torch.tensor(frame_counts)


def assert_same(actual, expected):
    assert actual.embeds.shape == expected.embeds.shape
    torch.testing.assert_close(actual.embeds, expected.embeds, atol=ATOL, rtol=0)
    assert len(actual.resolution_outputs) == len(expected.resolution_outputs)
    for a, e in zip(actual.resolution_outputs, expected.resolution_outputs):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, atol=ATOL, rtol=0)
    assert actual.token_counts.tolist() == expected.token_counts.tolist()
    torch.testing.assert_close(actual.diversity_loss, expected.diversity_loss, atol=ATOL, rtol=0)


CASES = [
    pytest.param([63], {}, id="63-frames-partial-coarse-window"),
    pytest.param([25, 8], {}, id="batch-25-and-8-frames"),
    pytest.param([63], {"causal_attention": "future"}, id="causal-future"),
    pytest.param([63], {"causal_attention": "past"}, id="causal-past"),
    pytest.param([63], {"causal_attention": "none"}, id="causal-none"),
    pytest.param([25, 8], {"causal_attention": "none"}, id="batch-causal-none"),
    pytest.param([25, 8], {"resolution_merge": "sum"}, id="batch-merge-sum"),
    pytest.param([10], {"resolution_merge": "concat", "causal_attention": "future"}, id="one-coarse-window"),
]


@pytest.mark.parametrize("frame_counts, overrides", CASES)
@torch.inference_mode()
def test_batched_connector_equals_per_window_loop(frame_counts, overrides):
    connector = make_connector(**overrides)
    tokens, counts = joint_tokens(connector, frame_counts)
    batched = connector(tokens, counts)
    assert_same(batched, per_window_connector(connector, tokens, counts))


@pytest.mark.parametrize("frame_counts, overrides", CASES[:2] + CASES[-2:-1])
@torch.inference_mode()
def test_batched_connector_equals_per_resolution_calls(frame_counts, overrides):
    connector = make_connector(**overrides)
    tokens, counts = joint_tokens(connector, frame_counts)
    assert_same(connector(tokens, counts), per_resolution_connector(connector, tokens, counts))


@torch.inference_mode()
def test_partial_and_padding_windows_match_in_batch():
    """Each sample of a batch equals the same sample run alone, on its own tokens."""
    connector = make_connector()
    tokens, counts = joint_tokens(connector, [25, 8])
    batched = connector(tokens, counts)
    for b, count in enumerate([25, 8]):
        alone = per_window_connector(connector, tokens[b : b + 1, :count], counts[b : b + 1])
        n = int(alone.token_counts[0])
        assert n == int(batched.token_counts[b])
        torch.testing.assert_close(batched.embeds[b, :n], alone.embeds[0, :n], atol=ATOL, rtol=0)


@pytest.mark.parametrize("resolutions_for_loss", [[1], [0], [0, 1]])
@torch.inference_mode()
def test_diversity_loss_equals_direct_computation(resolutions_for_loss):
    connector = make_connector(diversity_loss_resolutions=resolutions_for_loss)
    tokens, counts = joint_tokens(connector, [25, 8])
    batched = connector(tokens, counts)
    loop = per_window_connector(connector, tokens, counts)

    # direct: every real window (3 + 1 coarse windows of 30 queries, 30 + 10 fine windows of 3), pairwise cosines
    expected = []
    for r in resolutions_for_loss:
        k, n = connector.config.resolutions[r]
        sims = []
        for b, count in enumerate([25, 8]):
            real_windows = -(-count // 10) * 10 // k
            for w in range(real_windows):
                q = loop.resolution_outputs[r][b, w * n : (w + 1) * n]
                cos = torch.nn.functional.cosine_similarity(q[:, None], q[None, :], dim=-1)
                sims.append(cos[~torch.eye(n, dtype=torch.bool)])
        expected.append(torch.cat(sims).mean())
    expected = torch.stack(expected).mean()

    torch.testing.assert_close(batched.diversity_loss, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(loop.diversity_loss, expected, atol=ATOL, rtol=0)
    from transformers_av.models.favor.windows import window_plan

    plans = [window_plan(c, connector.config.resolutions) for c in [25, 8]]
    torch.testing.assert_close(
        reference_diversity_loss(connector.config, batched.resolution_outputs, plans), expected, atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("group_tokens, group_sizes", [(320, [320] * 6), (1300, [1280, 640])])
@torch.inference_mode()
def test_qformer_in_groups_of_windows_equals_the_per_resolution_loop(group_tokens, group_sizes, monkeypatch):
    """The Q-Former runs over groups of whole coarse windows (320 tokens: one window per group; 1300: groups of four
    and two windows, the first one across the two samples): same outputs as the one-pass reference, padding masks
    sliced with the windows (sample 2 is mostly padding)."""
    connector = make_connector(causal_attention="future")
    connector.qformer.max_group_tokens = group_tokens
    tokens, counts = joint_tokens(connector, [25, 8])  # 2 samples x 3 coarse windows of 10 frames
    seen = []  # tokens of every group the Q-Former runs over
    run = connector.qformer._run

    def recording(queries, windows, output_attentions):
        seen.append(windows.features.shape[0])
        return run(queries, windows, output_attentions)

    monkeypatch.setattr(connector.qformer, "_run", recording)
    assert_same(connector(tokens, counts), per_resolution_connector(connector, tokens, counts))
    assert seen == group_sizes


@pytest.mark.parametrize("frame_counts", [[63, 25], [63]], ids=["batch", "one-video"])
@pytest.mark.parametrize("causal", ["future", "none"])
@torch.inference_mode()
def test_outputs_do_not_depend_on_the_group_size(causal, frame_counts):
    """Each group is LayerNorm'd and projected on its own; every operation is per token row or per window, so the
    outputs are those of one group. Only the BLAS may block a matmul differently for another number of rows: 0 on
    this machine (MKL), 1e-6 allowed (activations are O(1)). One video is not padded whole: its 63 frames end
    inside the 7th coarse window, which its group completes with zeros."""
    connector = make_connector(causal_attention=causal)
    tokens, counts = joint_tokens(connector, frame_counts)  # 7 coarse windows of 320 tokens per sample
    connector.qformer.max_group_tokens = 7 * len(frame_counts) * 320
    whole = connector(tokens, counts)
    if len(frame_counts) == 1:
        assert_same(whole, per_resolution_connector(connector, tokens, counts))
    for group_tokens in (320, 960, 1300):
        connector.qformer.max_group_tokens = group_tokens
        normalised = []  # the rows of every group the joint LayerNorm sees
        hook = connector.layer_norm.register_forward_hook(lambda module, args, out: normalised.append(len(out)))
        grouped = connector(tokens, counts)
        hook.remove()
        step = group_tokens // 320 * 320
        total = 7 * len(frame_counts) * 320
        assert normalised == [min(step, total - start) for start in range(0, total, step)]
        torch.testing.assert_close(grouped.embeds, whole.embeds, atol=1e-6, rtol=0)
        for a, b in zip(grouped.resolution_outputs, whole.resolution_outputs):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        torch.testing.assert_close(grouped.diversity_loss, whole.diversity_loss, atol=1e-6, rtol=0)


@pytest.mark.parametrize("causal", ["future", "none"])
def test_gradients_in_groups_equal_the_per_resolution_loop(causal):
    """With a gradient to carry, the projections move from one resolution's position table to the next out of place
    (autograd saved the previous resolution's views) instead of in place: same values as under inference_mode, and
    the gradients of the input and of every connector weight are those of the plain per-resolution loop."""
    connector = make_connector(causal_attention=causal)
    connector.qformer.max_group_tokens = 640  # 2 groups per sample, one across the two samples
    tokens, counts = joint_tokens(connector, [25, 8])
    weights = torch.randn(connector(tokens, counts).embeds.shape, generator=torch.Generator().manual_seed(2))
    grads = []
    for run in (connector, per_resolution_connector):
        connector.zero_grad()
        inputs = tokens.clone().requires_grad_(True)
        output = run(connector, inputs, counts) if run is per_resolution_connector else run(inputs, counts)
        ((output.embeds * weights).sum() + output.diversity_loss).backward()
        # the audio projections run before the connector's forward (in the model): they get no gradient here
        weight_grads = {name: p.grad for name, p in connector.named_parameters() if p.grad is not None}
        grads.append({"input": inputs.grad, **weight_grads})
        if run is connector:
            with torch.inference_mode():  # in place: bit for bit the same additions
                assert torch.equal(connector(tokens, counts).embeds, output.embeds.detach())
    batched, loop = grads
    assert batched.keys() == loop.keys()
    assert {"layer_norm.weight", "position_embedding.weight", "query_tokens.0", "projection.weight"} <= loop.keys()
    for name, expected in loop.items():
        # the paths differ in summation order only: ATOL of each tensor's largest gradient (they reach ~2e3: the
        # LayerNorm of the all-zero padding rows divides by sqrt(eps); measured <= 9e-7 of it)
        scale = max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(batched[name], expected, atol=ATOL * scale, rtol=0, msg=name)
