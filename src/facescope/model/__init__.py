"""Model: the multi-task network (network, PyTorch), its export and int8 quantization to an inference bundle."""

# The backbones facescope.model.network.BACKBONES builds, named here without PyTorch so that `train -h`
# stays light; the network module checks the two agree when it loads.
BACKBONE_NAMES = ("faceres", "mobilenet_v2", "resnet18", "resnet34", "resnet50", "efficientnet_b0", "vit_b_16",
                  "small_cnn")
