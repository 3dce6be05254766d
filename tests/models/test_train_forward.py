#!/usr/bin/python3
"""tools.model.vmoe_reference.forward_train (the batched forward
tools/demo/train.py trains with) computes what VisionMoE.forward computes, also with
use_onednn_linears, and gives gradients to the routers through the gates."""

import unittest

import torch

from tools.model.export_model import random_state_dict
from tools.model.vmoe_reference import (ModelConfig, VisionMoE, forward_train,
                                        use_onednn_linears)

BASE = {"image_size": 28, "patch_size": 7, "dim": 32, "depth": 3, "heads": 4,
        "mlp_dim": 48, "num_classes": 10}


def model(**arch) -> VisionMoE:
    config = ModelConfig.from_architecture({**BASE, **arch})
    net = VisionMoE(config)
    net.load_state_dict(random_state_dict(config, seed=3))
    return net.eval()


class ForwardTrainTest(unittest.TestCase):
    def check_same_logits(self, net, images):
        with torch.no_grad():
            expected, routing = net(images)
            logits, router_logits = forward_train(net, images)
            self.assertEqual(len(router_logits), len(routing))
            self.assertLess((logits - expected).abs().max().item(), 1e-5)
            use_onednn_linears(net)
            fast, _ = forward_train(net, images)
            self.assertLess((fast - expected).abs().max().item(), 1e-4)
            again, _ = net(images)
            self.assertLess((again - expected).abs().max().item(), 1e-4)

    def test_image_routing_k1_without_renormalisation(self):
        torch.manual_seed(0)
        self.check_same_logits(
            model(moe={"layers": [1, 2], "num_experts": 4, "top_k": 1,
                       "renormalize": False}), torch.randn(6, 3, 28, 28))

    def test_image_routing_k2_class_token(self):
        torch.manual_seed(1)
        self.check_same_logits(
            model(class_token=True, global_pool="token",
                  moe={"layers": [0, 2], "num_experts": 3, "top_k": 2}),
            torch.randn(5, 3, 28, 28))

    def test_token_routing_and_dense(self):
        torch.manual_seed(2)
        self.check_same_logits(
            model(moe={"layers": [2], "num_experts": 4, "top_k": 2,
                       "routing": "token"}), torch.randn(3, 3, 28, 28))
        self.check_same_logits(model(), torch.randn(3, 3, 28, 28))

    def test_router_logits_are_the_mean_patch_token_s_and_get_gradients(self):
        net = model(moe={"layers": [1, 2], "num_experts": 4, "top_k": 1,
                         "renormalize": False})
        images = torch.randn(4, 3, 28, 28)
        logits, router_logits = forward_train(net, images)
        self.assertEqual([tuple(r.shape) for r in router_logits], [(4, 4), (4, 4)])
        # Through the task loss alone (k = 1, no renormalisation: the gate
        # probability scales the expert's output).
        logits.sum().backward()
        for layer in (1, 2):
            grad = net.blocks[layer].moe.router.weight.grad
            self.assertIsNotNone(grad)
            self.assertGreater(grad.abs().sum().item(), 0)


if __name__ == "__main__":
    unittest.main()
