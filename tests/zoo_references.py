"""torchvision's networks as compact plain-PyTorch references, for the mobile zoo's tests
(test_zoo_torchvision.py, test_zoo_golden.py).

torchvision cannot be imported here (only a CUDA build of it lies on our machines), so each
network is written below following torchvision's code (``torchvision/models/resnet.py``,
``mobilenetv3.py``, ``efficientnet.py``, ``mnasnet.py``, ``squeezenet.py``,
``shufflenetv2.py``), and DARTS-V2 following the DARTS code: the same layers, in the same
order, with the same batch-norm settings. Nothing here comes from shrinkc.
``ZOO_REFERENCES`` maps each spec of ``specs/zoo/`` to the published parameter count and its
reference."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


# --------------------------------------------------------------------------- references


def conv_bn(cin, cout, k=1, stride=1, groups=1, act=None, eps=1e-5, momentum=0.1):
    """torchvision's ``Conv2dNormActivation``: conv (no bias), batch norm, activation."""
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=eps, momentum=momentum)]
    return nn.Sequential(*layers, *([act()] if act else []))


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation."""

    def __init__(self, c, squeeze, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = act(), gate()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class Residual(nn.Module):
    """A block whose output adds its input where the shapes match (MobileNet, MnasNet,
    EfficientNet: ``use_res_connect``)."""

    def __init__(self, block, use_res):
        super().__init__()
        self.block, self.use_res = block, use_res

    def forward(self, x):
        return self.block(x) + x if self.use_res else self.block(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, c, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or cin != c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False),
                                            nn.BatchNorm2d(c))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, c, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c)
        self.downsample = None
        if stride != 1 or cin != 4 * c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * c, 1, stride, bias=False),
                                            nn.BatchNorm2d(4 * c))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, classes=1000):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (c, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, c, 2 if i and not j else 1))
                cin = c * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# torchvision's bneck_conf rows: input, kernel, expanded, output, SE, nonlinearity, stride
V3_LARGE = [(16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2),
            (24, 3, 72, 24, False, "RE", 1), (24, 5, 72, 40, True, "RE", 2),
            (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
            (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1),
            (80, 3, 184, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
            (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
            (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1),
            (160, 5, 960, 160, True, "HS", 1)]
V3_SMALL = [(16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2),
            (24, 3, 88, 24, False, "RE", 1), (24, 5, 96, 40, True, "HS", 2),
            (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
            (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1),
            (48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1),
            (96, 5, 576, 96, True, "HS", 1)]


class MobileNetV3(nn.Module):
    def __init__(self, setting, last_channel, classes=1000):
        super().__init__()
        norm = {"eps": 0.001, "momentum": 0.01}
        layers = [conv_bn(3, 16, 3, 2, act=nn.Hardswish, **norm)]
        for cin, k, exp, cout, se, nl, s in setting:
            act = nn.Hardswish if nl == "HS" else nn.ReLU
            block = [conv_bn(cin, exp, 1, act=act, **norm)] if exp != cin else []
            block.append(conv_bn(exp, exp, k, s, groups=exp, act=act, **norm))
            if se:
                block.append(SqueezeExcitation(exp, make_divisible(exp // 4), gate=nn.Hardsigmoid))
            block.append(conv_bn(exp, cout, **norm))
            layers.append(Residual(nn.Sequential(*block), s == 1 and cin == cout))
        last = setting[-1][3]
        layers.append(conv_bn(last, 6 * last, act=nn.Hardswish, **norm))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(6 * last, last_channel), nn.Hardswish(),
                                        nn.Dropout(0.2), nn.Linear(last_channel, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class EfficientNetB0(nn.Module):
    # expand ratio, kernel, stride, input, output, layers
    SETTING = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
               (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
               (6, 3, 1, 192, 320, 1)]

    def __init__(self, classes=1000):
        super().__init__()
        layers = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
        for t, k, s, cin, cout, n in self.SETTING:
            stage = []
            for j in range(n):
                cin, s = (cin, s) if j == 0 else (cout, 1)
                exp = cin * t
                block = [conv_bn(cin, exp, act=nn.SiLU)] if exp != cin else []
                block += [conv_bn(exp, exp, k, s, groups=exp, act=nn.SiLU),
                          SqueezeExcitation(exp, max(1, cin // 4), act=nn.SiLU),
                          conv_bn(exp, cout)]
                stage.append(Residual(nn.Sequential(*block), s == 1 and cin == cout))
            layers.append(nn.Sequential(*stage))
        layers.append(conv_bn(320, 1280, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class MnasNet1_0(nn.Module):
    MOMENTUM = 1 - 0.9997  # torchvision's _BN_MOMENTUM
    # input, output, kernel, stride, expansion, repeats (torchvision's _stack calls)
    STACKS = [(16, 24, 3, 2, 3, 3), (24, 40, 5, 2, 3, 3), (40, 80, 5, 2, 6, 3),
              (80, 96, 3, 1, 6, 2), (96, 192, 5, 2, 6, 4), (192, 320, 3, 1, 6, 1)]

    def __init__(self, classes=1000):
        super().__init__()
        m = self.MOMENTUM
        layers = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32, momentum=m), nn.ReLU(),
                  nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False),
                  nn.BatchNorm2d(32, momentum=m), nn.ReLU(),
                  nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16, momentum=m)]
        for cin, cout, k, s, t, n in self.STACKS:
            stack = []
            for j in range(n):
                cin, s = (cin, s) if j == 0 else (cout, 1)
                mid = cin * t
                block = nn.Sequential(
                    nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, momentum=m), nn.ReLU(),
                    nn.Conv2d(mid, mid, k, s, k // 2, groups=mid, bias=False),
                    nn.BatchNorm2d(mid, momentum=m), nn.ReLU(),
                    nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout, momentum=m))
                stack.append(Residual(block, s == 1 and cin == cout))
            layers.append(nn.Sequential(*stack))
        layers += [nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280, momentum=m),
                   nn.ReLU()]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(self.layers(x).mean([2, 3]))


class Fire(nn.Module):
    def __init__(self, cin, s, e1, e3):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, s, 1)
        self.expand1x1, self.expand3x3 = nn.Conv2d(s, e1, 1), nn.Conv2d(s, e3, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class SqueezeNet1_1(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def channel_shuffle(x, groups):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """torchvision's shufflenetv2.InvertedResidual."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride, half = stride, cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half),
            nn.ReLU(),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24),
                                   nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 24
        for name, repeats, cout in (("stage2", 4, 116), ("stage3", 8, 232), ("stage4", 4, 464)):
            units = [ShuffleUnit(cin, cout, 2)] + [ShuffleUnit(cout, cout, 1)
                                                    for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            cin = cout
        self.conv5 = nn.Sequential(nn.Conv2d(464, 1024, 1, bias=False), nn.BatchNorm2d(1024),
                                   nn.ReLU())
        self.fc = nn.Linear(1024, classes)

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean([2, 3]))


# DARTS-V2 (the DARTS code's model.py and operations.py, NetworkCIFAR without the auxiliary
# head, in eval mode where drop_path is off)
def _relu_conv_bn(cin, cout):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


def _sep_conv(c, stride):
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
        nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


def _dil_conv(c, stride):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, stride, 2, 2, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class FactorizedReduce(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(cin, cout // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(cin, cout // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


DARTS_OPS = {
    "max_pool_3x3": lambda c, stride: nn.MaxPool2d(3, stride, padding=1),
    "skip_connect": lambda c, stride: nn.Identity() if stride == 1 else FactorizedReduce(c, c),
    "sep_conv_3x3": _sep_conv,
    "dil_conv_3x3": _dil_conv,
}
DARTS_V2_NORMAL = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                   ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0),
                   ("skip_connect", 0), ("dil_conv_3x3", 2)]
DARTS_V2_REDUCE = [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                   ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
                   ("skip_connect", 2), ("max_pool_3x3", 1)]


class DartsCell(nn.Module):
    def __init__(self, c_prev_prev, c_prev, c, reduction, reduction_prev):
        super().__init__()
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                            else _relu_conv_bn(c_prev_prev, c))
        self.preprocess1 = _relu_conv_bn(c_prev, c)
        genotype = DARTS_V2_REDUCE if reduction else DARTS_V2_NORMAL
        self._ops = nn.ModuleList(DARTS_OPS[name](c, 2 if reduction and index < 2 else 1)
                                  for name, index in genotype)
        self._indices = [index for _, index in genotype]

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(4):
            h1 = self._ops[2 * i](states[self._indices[2 * i]])
            h2 = self._ops[2 * i + 1](states[self._indices[2 * i + 1]])
            states.append(h1 + h2)
        return torch.cat(states[2:], dim=1)


class NetworkCIFAR(nn.Module):
    def __init__(self, c=36, classes=10, layers=20):
        super().__init__()
        c_curr = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(DartsCell(c_prev_prev, c_prev, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, 4 * c_curr
        self.classifier = nn.Linear(c_prev, classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(s1.mean([2, 3]))


# spec -> (torchvision's parameter count, the reference)
ZOO_REFERENCES = {
    "resnet18": (11_689_512, lambda: ResNet(BasicBlock, [2, 2, 2, 2])),
    "resnet50": (25_557_032, lambda: ResNet(Bottleneck, [3, 4, 6, 3])),
    "mobilenet_v3_small": (2_542_856, lambda: MobileNetV3(V3_SMALL, 1024)),
    "mobilenet_v3_large": (5_483_032, lambda: MobileNetV3(V3_LARGE, 1280)),
    "efficientnet_b0": (5_288_548, EfficientNetB0),
    "mnasnet1_0": (4_383_312, MnasNet1_0),
    "squeezenet1_1": (1_235_496, SqueezeNet1_1),
    "shufflenet_v2_x1_0": (2_278_604, ShuffleNetV2),
    "darts_v2_cifar": (3_349_342, NetworkCIFAR),  # the DARTS code's count
}
NAMES = sorted(ZOO_REFERENCES)
# the input size of the function tests, and the other size one ONNX file must also take
SIZES = {"darts_v2_cifar": (32, 48)}


def _sizes(name):
    return SIZES.get(name, (224, 160))
