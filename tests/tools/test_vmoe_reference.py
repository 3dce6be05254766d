#!/usr/bin/python3
"""Tests of tools/model/vmoe_reference.py: the rules of docs/model-spec.md on
hand-made inputs, and the model against independent formulations (PyTorch's
own multi-head attention, a dense model equal to a one-expert MoE)."""

import unittest

import torch

from tools.model.vmoe_reference import (Attention, ConfigError, ModelConfig,
                                        VisionMoE, assign_slots,
                                        priority_near_ties, tensor_shapes,
                                        top_k_choices)

TINY = {"image_size": 32, "patch_size": 8, "dim": 32, "depth": 4, "heads": 2,
        "mlp_dim": 64, "num_classes": 10}


def tiny(**changes) -> dict:
    return {**TINY, **changes}


def moe(**changes) -> dict:
    return {"layers": [1, 3], "num_experts": 4, "top_k": 2, **changes}


class ModelConfigTest(unittest.TestCase):
    def test_defaults_are_applied_and_written_out(self):
        config = ModelConfig.from_architecture(tiny(moe=moe()))
        self.assertEqual(config.to_architecture(), {
            **TINY, "norm_eps": 1e-6, "class_token": False, "global_pool": "avg",
            "moe": {"layers": [1, 3], "num_experts": 4, "top_k": 2,
                    "routing": "image", "renormalize": True,
                    "capacity_factor": 1.0, "batch_priority": True}})

    def test_dense_model_has_no_moe_fields(self):
        config = ModelConfig.from_architecture(tiny())
        self.assertEqual(config.to_architecture()["moe"], {"layers": []})

    def test_invalid_architectures_are_explained(self):
        cases = [
            (tiny(moe=moe(num_expert=4)), "unknown field.*num_expert"),
            ({k: v for k, v in TINY.items() if k != "dim"}, "missing.*dim"),
            (tiny(heads=3), "dim 32 is not a multiple of heads 3"),
            (tiny(patch_size=5), "image_size 32 is not a multiple of patch_size 5"),
            (tiny(depth=True), "depth must be a positive integer"),
            (tiny(global_pool="token"), "needs class_token"),
            (tiny(global_pool="max"), "global_pool must be one of"),
            (tiny(moe=moe(layers=[1, 4])), r"moe.layers \[4\] outside"),
            (tiny(moe=moe(layers=[1, 1])), "duplicates"),
            (tiny(moe=moe(top_k=5)), "top_k 5 exceeds"),
            (tiny(moe=moe(routing="expert")), "moe.routing must be one of"),
            (tiny(moe=moe(capacity_factor=0)),
             "moe.capacity_factor must be a positive number"),
            (tiny(moe={"layers": [], "num_experts": 4}), "must be absent"),
        ]
        for arch, message in cases:
            with self.subTest(message=message):
                with self.assertRaisesRegex(ConfigError, message):
                    ModelConfig.from_architecture(arch)

    def test_expert_capacity(self):
        def capacity(factor, **changes):
            return ModelConfig.from_architecture(tiny(**changes, moe=moe(
                routing="token", capacity_factor=factor))).expert_capacity
        self.assertEqual(capacity(1.05), 9)   # ceil(2 * 16 * 1.05 / 4)
        self.assertEqual(capacity(1.0), 8)    # integral: no rounding up
        self.assertEqual(capacity(0.5, class_token=True), 5)  # T = 17: ceil(4.25)
        # 2 * 25 * 1.1 / 5 is 11 exactly, though float32(1.1) > 1.1.
        self.assertEqual(ModelConfig.from_architecture(tiny(image_size=40, moe=moe(
            routing="token", num_experts=5, capacity_factor=1.1))).expert_capacity, 11)


class StateDictTest(unittest.TestCase):
    def test_names_and_shapes_are_model_spec_s(self):
        for arch in (tiny(), tiny(class_token=True, moe=moe(routing="token"))):
            config = ModelConfig.from_architecture(arch)
            actual = {name: tuple(tensor.shape)
                      for name, tensor in VisionMoE(config).state_dict().items()}
            self.assertEqual(actual, tensor_shapes(config))

    def test_moe_blocks_have_router_and_experts_but_no_mlp(self):
        names = tensor_shapes(ModelConfig.from_architecture(tiny(moe=moe())))
        self.assertIn("blocks.1.moe.router.weight", names)
        self.assertIn("blocks.3.moe.experts.3.fc2.bias", names)
        self.assertNotIn("blocks.1.moe.router.bias", names)
        self.assertFalse([n for n in names if n.startswith("blocks.1.mlp")])


class RoutingRulesTest(unittest.TestCase):
    def test_top_k_ties_go_to_the_lower_expert_index(self):
        weights, experts, near_tie = top_k_choices(
            torch.tensor([[0.1, 0.3, 0.3, 0.3], [0.1, 0.2, 0.3, 0.4]]), 2)
        self.assertEqual(experts.tolist(), [[1, 2], [3, 2]])
        torch.testing.assert_close(weights[1], torch.tensor([0.4, 0.3]))
        self.assertEqual(near_tie.tolist(), [True, False])

    def test_near_tie_covers_the_first_unchosen_expert(self):
        probs = torch.tensor([0.5, 0.24999, 0.25001, 0.0])
        self.assertFalse(top_k_choices(probs, 1)[2])  # wide gap after choice 0
        self.assertTrue(top_k_choices(probs, 2)[2])   # choice 1 vs the next

    # Four tokens that all prefer expert 0, then expert 1; capacity 2.
    WEIGHTS = torch.tensor([[0.5, 0.1], [0.9, 0.1], [0.7, 0.1], [0.7, 0.2]])
    EXPERTS = torch.tensor([[0, 1], [0, 1], [0, 1], [0, 2]])

    def test_batch_priority_serves_confident_tokens_first(self):
        kept = assign_slots(self.WEIGHTS, self.EXPERTS, 2, 3, batch_priority=True)
        # Priority 1, 2, 3 (tie with 2: lower index first), 0.
        self.assertEqual(kept.tolist(), [[False, False], [True, True],
                                         [True, True], [False, True]])

    def test_without_batch_priority_token_order_decides(self):
        kept = assign_slots(self.WEIGHTS, self.EXPERTS, 2, 3, batch_priority=False)
        self.assertEqual(kept.tolist(), [[True, True], [True, True],
                                         [False, False], [False, True]])

    def test_priority_tie_is_flagged_only_where_it_decides(self):
        kept = assign_slots(self.WEIGHTS, self.EXPERTS, 2, 3, batch_priority=True)
        flags = priority_near_ties(self.WEIGHTS, self.EXPERTS, kept)
        # Tokens 2 and 3 tie and compete for the last slot of expert 0.
        self.assertEqual(flags.tolist(), [False, False, True, True])
        roomy = assign_slots(self.WEIGHTS, self.EXPERTS, 4, 3, batch_priority=True)
        self.assertFalse(priority_near_ties(self.WEIGHTS, self.EXPERTS, roomy).any())


class ModelTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_attention_matches_pytorch_multihead_attention(self):
        # nn.MultiheadAttention packs q, k, v then heads: the [3][H][D/H] layout.
        ours = Attention(32, 4)
        theirs = torch.nn.MultiheadAttention(32, 4, batch_first=True)
        theirs.in_proj_weight.data.copy_(ours.qkv.weight)
        theirs.in_proj_bias.data.copy_(ours.qkv.bias)
        theirs.out_proj.load_state_dict(ours.proj.state_dict())
        h = torch.randn(2, 5, 32)
        with torch.no_grad():
            expected, _ = theirs(h, h, h, need_weights=False)
            torch.testing.assert_close(ours(h), expected)

    def test_patch_tokens_are_row_major(self):
        model = VisionMoE(ModelConfig.from_architecture(tiny()))
        image = torch.zeros(1, 3, 32, 32)
        image[0, :, 8:16, 16:24] = 1.0          # patch row 1, column 2
        with torch.no_grad():
            tokens = model.patch_embed(image)[0] - model.patch_embed.proj.bias
        changed = tokens.abs().sum(dim=1).nonzero().flatten().tolist()
        self.assertEqual(changed, [1 * 4 + 2])

    def test_one_expert_moe_equals_the_dense_model(self):
        # With E = k = 1 both routings give the expert weight 1 (cap >= T).
        dense = VisionMoE(ModelConfig.from_architecture(tiny(class_token=True)))
        images = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            expected, _ = dense(images)
        for routing in ("image", "token"):
            config = ModelConfig.from_architecture(tiny(class_token=True, moe=moe(
                num_experts=1, top_k=1, routing=routing)))
            model = VisionMoE(config)
            model.load_state_dict(self.as_one_expert(dense.state_dict()))
            with torch.no_grad():
                actual, _ = model(images)
            torch.testing.assert_close(actual, expected, msg=routing)

    @staticmethod
    def as_one_expert(dense_state: dict) -> dict:
        """The dense weights with blocks 1 and 3's MLP as expert 0."""
        state = {}
        for name, tensor in dense_state.items():
            if name.startswith(("blocks.1.mlp.", "blocks.3.mlp.")):
                name = name.replace(".mlp.", ".moe.experts.0.")
            state[name] = tensor
        for i in (1, 3):
            state[f"blocks.{i}.moe.router.weight"] = torch.randn(1, 32)
        return state

    def test_token_with_no_kept_assignment_gets_only_the_residual(self):
        config = ModelConfig.from_architecture(tiny(moe=moe(
            routing="token", capacity_factor=0.1)))      # cap = 1
        layer = VisionMoE(config).blocks[1].moe
        with torch.no_grad():
            out, routing = layer(torch.randn(2, 16, 32))
        dropped = ~routing.kept.any(dim=2)
        self.assertTrue(dropped.any())
        self.assertTrue((out[dropped] == 0).all())
        self.assertTrue((out[~dropped] != 0).any(dim=1).all())


if __name__ == "__main__":
    unittest.main()
