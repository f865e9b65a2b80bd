"""Test-only transcriptions of the official network definitions (independent of attn_export).

Re-typed from the published code so the tests can derive parameter counts and reference outputs
without our builders: torchvision/timm ``resnet.py`` (the host layout), Jongchan/attention-module
``MODELS/model_resnet.py`` + ``cbam.py``, BangguWu/ECANet ``models/eca_resnet.py`` +
``eca_module.py``, ZjjConan/SimAM ``networks/imagenet/resnet.py`` + ``simam_module.py`` (at
40938ce), timm ``layers/squeeze_excite.py`` ``SEModule`` (seresnet50), houqb/CoordAttention
``mbv2_ca.py`` (at 227af76) and torchvision ``mobilenetv2.py``. Only what the forward pass and
the key layout need is kept; the final pooling is a global mean (the official ``AvgPool2d(7)``
equals it at 224 px, the published size, and the tests run smaller maps).
``tools/record_layouts.py`` writes the (key, shape) layouts in attn_export/models/layouts/ from
these definitions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.modules.test_simam import SeedSimAM

# ---------------------------------------------------------------------------- attention modules


class JongchanBasicConv(nn.Module):
    def __init__(self, cin, cout, k, padding):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class JongchanChannelGate(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c))

    def forward(self, x):
        avg = self.mlp(F.avg_pool2d(x, (x.size(2), x.size(3))))
        mx = self.mlp(F.max_pool2d(x, (x.size(2), x.size(3))))
        return x * torch.sigmoid(avg + mx).unsqueeze(2).unsqueeze(3).expand_as(x)


class JongchanSpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = JongchanBasicConv(2, 1, 7, 3)

    def forward(self, x):
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), 1)
        return x * torch.sigmoid(self.spatial(pooled))


class JongchanCBAM(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.ChannelGate = JongchanChannelGate(c, r)
        self.SpatialGate = JongchanSpatialGate()

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))


class ECALayer(nn.Module):
    def __init__(self, c, k_size=3):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)

    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y).expand_as(x)


class TimmSEModule(nn.Module):
    def __init__(self, c, rd_ratio=1 / 16):
        super().__init__()
        rd = max(8, int(c * rd_ratio + 4) // 8 * 8)  # make_divisible(c / 16, 8, round_limit=0)
        self.fc1 = nn.Conv2d(c, rd, 1, bias=True)
        self.bn = nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, c, 1, bias=True)

    def forward(self, x):
        s = self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * torch.sigmoid(s)


# ZjjConan/SimAM's simam_module: the seed transcription the block tests already hold
SimAMModule = SeedSimAM


# ---------------------------------------------------------------------------- ResNet


def conv3x3(a, b, stride=1):
    return nn.Conv2d(a, b, 3, stride, 1, bias=False)


def conv1x1(a, b, stride=1):
    return nn.Conv2d(a, b, 1, stride, bias=False)


class OfficialBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, attn=None, k=3):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        if attn == "simam":
            self.conv2 = nn.Sequential(self.conv2, SimAMModule(planes, 0.1))
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class OfficialBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, attn=None, k=3):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        if attn == "simam":
            self.conv2 = nn.Sequential(self.conv2, SimAMModule(planes, 0.1))
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.attn_attr = {"cbam": "cbam", "eca": "eca", "se": "se"}.get(attn)
        if attn == "cbam":
            self.cbam = JongchanCBAM(planes * 4, 16)
        elif attn == "eca":
            self.eca = ECALayer(planes * 4, k)
        elif attn == "se":
            self.se = TimmSEModule(planes * 4)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.attn_attr:
            out = getattr(self, self.attn_attr)(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class OfficialResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, attn=None, k_size=(3, 3, 3, 3)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, planes, n, 1 if i == 0 else 2,
                                                            attn, k_size[i]))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride, attn, k):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, attn, k)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, attn=attn, k=k) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def official_resnet(depth, attn=None, **kw):
    block, layers = {18: (OfficialBasicBlock, (2, 2, 2, 2)), 34: (OfficialBasicBlock, (3, 4, 6, 3)),
                     50: (OfficialBottleneck, (3, 4, 6, 3))}[depth]
    return OfficialResNet(block, layers, attn=attn, **kw)


# ---------------------------------------------------------------------------- MobileNetV2


class h_swish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3) / 6


class HouqbCoordAtt(nn.Module):
    def __init__(self, inp, oup, groups=32):
        super().__init__()
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        mip = max(8, inp // groups)
        self.conv1 = nn.Conv2d(inp, mip, 1, 1, 0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, oup, 1, 1, 0)
        self.conv3 = nn.Conv2d(mip, oup, 1, 1, 0)
        self.relu = h_swish()

    def forward(self, x):
        n, c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = self.relu(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        return x * self.conv3(x_w).sigmoid() * self.conv2(x_h).sigmoid()


MBV2_CFGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))


def _cbr(a, b, k, s=1, g=1, act=True):
    layers = [nn.Conv2d(a, b, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(b)]
    return layers + ([nn.ReLU6(inplace=True)] if act else [])


class HouqbInvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = round(inp * t)
        self.identity = stride == 1 and inp == oup
        if t == 1:
            self.conv = nn.Sequential(*_cbr(hidden, hidden, 3, stride, hidden),
                                      *_cbr(hidden, oup, 1, act=False))
        else:
            self.conv = nn.Sequential(*_cbr(inp, hidden, 1), *_cbr(hidden, hidden, 3, stride, hidden),
                                      HouqbCoordAtt(hidden, hidden), *_cbr(hidden, oup, 1, act=False))

    def forward(self, x):
        return x + self.conv(x) if self.identity else self.conv(x)


class HouqbMBV2CA(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        layers, cin = [nn.Sequential(*_cbr(3, 32, 3, 2))], 32
        for t, c, n, s in MBV2_CFGS:
            for i in range(n):
                layers.append(HouqbInvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*layers)
        self.conv = nn.Sequential(*_cbr(cin, 1280, 1))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.avgpool(self.conv(self.features(x)))
        return self.classifier(x.view(x.size(0), -1))


class TorchvisionInvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = int(round(inp * t))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [] if t == 1 else [nn.Sequential(*_cbr(inp, hidden, 1))]
        layers += [nn.Sequential(*_cbr(hidden, hidden, 3, stride, hidden)),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchvisionMobileNetV2(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        layers, cin = [nn.Sequential(*_cbr(3, 32, 3, 2))], 32
        for t, c, n, s in MBV2_CFGS:
            for i in range(n):
                layers.append(TorchvisionInvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(nn.Sequential(*_cbr(cin, 1280, 1)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------- the layouts

OFFICIAL = {
    # layout name: (builder, our network, --source, how the release file is saved, origin)
    "torchvision_resnet18": (lambda: official_resnet(18), "resnet18", "torchvision", "plain",
                             "pytorch/vision torchvision/models/resnet.py"),
    "torchvision_resnet34": (lambda: official_resnet(34), "resnet34", "torchvision", "plain",
                             "pytorch/vision torchvision/models/resnet.py"),
    "torchvision_resnet50": (lambda: official_resnet(50), "resnet50", "torchvision", "plain",
                             "pytorch/vision torchvision/models/resnet.py"),
    "timm_seresnet50": (lambda: official_resnet(50, "se"), "se_resnet50", "timm", "plain",
                        "huggingface/pytorch-image-models timm/models/resnet.py seresnet50"),
    "jongchan_cbam_resnet50": (lambda: official_resnet(50, "cbam"), "cbam_resnet50", "official",
                               "dataparallel", "Jongchan/attention-module MODELS/model_resnet.py"),
    "bangguwu_eca_resnet50": (lambda: official_resnet(50, "eca", k_size=(3, 5, 5, 7)),
                              "eca_resnet50", "official", "dataparallel",
                              "BangguWu/ECANet models/eca_resnet.py eca_resnet50(k_size=[3,5,5,7])"),
    "zjjconan_simam_resnet50": (lambda: official_resnet(50, "simam"), "simam_resnet50", "official",
                                "dataparallel", "ZjjConan/SimAM networks/imagenet/resnet.py"),
    "houqb_mbv2_ca": (HouqbMBV2CA, "mobilenetv2_ca", "houqb", "plain",
                      "houqb/CoordAttention mbv2_ca.py"),
    "torchvision_mobilenet_v2": (TorchvisionMobileNetV2, "mobilenetv2", "torchvision", "plain",
                                 "pytorch/vision torchvision/models/mobilenetv2.py"),
}
