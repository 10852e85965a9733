#!/usr/bin/env python3
"""PyTorch definitions of lowbit's model zoo, structured and named as the reference definitions
lowbit follows, so a lowbit checkpoint loads into them with load_state_dict(strict=True):
  resnet20..110 (option A) / resnet20b..110b (option B): akamaster/pytorch_resnet_cifar10
  resnet18, shufflenetv2*, mobilenetv2:                   kuangliu/pytorch-cifar (CIFAR variants)
  wrn-D-K (no dropout):                                   xternalz/WideResNet-pytorch
  smallcnn:                                               lowbit's own (models/smallcnn.cpp)
Written for lowbit (not copied). Usage: python3 torch_models.py --model resnet20 [--classes 10]
prints "name shape" per state_dict entry in lowbit's order, the same lines as
`lowbit info --model resnet20 --state-dict`, so the two can be diffed.
"""
import argparse
import re

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- CIFAR ResNet (He et al. 2016), akamaster's names; also kuangliu's ResNet-18 ----
class PadShortcut(nn.Module):
    """Option A: x[:, :, ::2, ::2] with planes//4 zero channels on each side (no state)."""

    def __init__(self, planes):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, option):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = PadShortcut(planes)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, stem, widths, blocks, option, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        in_planes = stem
        for s, (w, n) in enumerate(zip(widths, blocks)):
            layer = []
            for b in range(n):
                layer.append(BasicBlock(in_planes, w, 2 if (s > 0 and b == 0) else 1, option))
                in_planes = w
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*layer))
        self.num_stages = len(widths)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        for s in range(self.num_stages):
            out = getattr(self, "layer%d" % (s + 1))(out)
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ---- ShuffleNetV2 (Ma et al. 2018), kuangliu's names, CIFAR stem (3x3 s1, no max pool) ----
def shuffle(x, groups=2):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleBasic(nn.Module):
    def __init__(self, channels):
        super().__init__()
        c = channels // 2
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x):
        c = x.size(1) // 2
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return shuffle(torch.cat([x1, out], 1))


class ShuffleDown(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.conv1 = nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(nn.Module):
    WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
              1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}

    def __init__(self, width, num_classes):
        super().__init__()
        w = self.WIDTHS[width]
        self.conv1 = nn.Conv2d(3, 24, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for s, n in enumerate((3, 7, 3)):
            units = [ShuffleDown(cin, w[s])] + [ShuffleBasic(w[s]) for _ in range(n)]
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*units))
            cin = w[s]
        self.conv2 = nn.Conv2d(cin, w[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w[3])
        self.linear = nn.Linear(w[3], num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ---- MobileNetV2 (Sandler et al. 2018), kuangliu's names and CIFAR strides, ReLU ----
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expansion, stride):
        super().__init__()
        planes = expansion * cin
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks, cin = [], 32
        for t, c, n, s in self.CFG:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, t, s if i == 0 else 1))
                cin = c
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ---- WideResNet (Zagoruyko & Komodakis 2016), xternalz's names, no dropout ----
class WideBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return (x if self.equal else self.convShortcut(act)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, k, num_classes):
        super().__init__()
        n = (depth - 4) // 6
        c = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, c[0], c[1], 1)
        self.block2 = NetworkBlock(n, c[1], c[2], 2)
        self.block3 = NetworkBlock(n, c[2], c[3], 2)
        self.bn1 = nn.BatchNorm2d(c[3])
        self.fc = nn.Linear(c[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ---- lowbit's small CNN ----
class SmallCNN(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        out = F.max_pool2d(F.relu(self.bn2(self.conv2(out))), 2)
        out = F.relu(self.bn3(self.conv3(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build(name, num_classes=10):
    """The PyTorch twin of lowbit's make_model(name, num_classes, ...)."""
    m = re.fullmatch(r"resnet(20|32|44|56|110)(b?)", name)
    if m:
        n = (int(m.group(1)) - 2) // 6
        return ResNet(16, (16, 32, 64), (n, n, n), "B" if m.group(2) else "A", num_classes)
    if name == "resnet18":
        return ResNet(64, (64, 128, 256, 512), (2, 2, 2, 2), "B", num_classes)
    m = re.fullmatch(r"shufflenetv2(?:_(0\.5|1\.0|1\.5|2\.0))?", name)
    if m:
        return ShuffleNetV2(float(m.group(1) or 1.0), num_classes)
    if name == "mobilenetv2":
        return MobileNetV2(num_classes)
    m = re.fullmatch(r"wrn-(\d+)-(\d+)", name)
    if m:
        return WideResNet(int(m.group(1)), int(m.group(2)), num_classes)
    if name == "smallcnn":
        return SmallCNN(num_classes)
    raise ValueError("unknown model %r" % name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    model = build(args.model, args.classes)
    for name, t in model.state_dict().items():
        print(name, str(tuple(t.shape)))  # "(16,)", as lowbit's shape_str
    print("# parameters:", sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
