"""PyTorch reference networks for the benchmarks and the weight-import test (PyTorch is never needed to train).

Written from the architectures documented in `pasn_jax/models/README.md`, with PyTorch's own layer types, so that
their `state_dict` keys are the ones real checkpoints use:

- `IResNet`: insightface's arcface_torch IResNet (stem conv1 -> bn1 -> prelu; IBasicBlock bn1 -> conv1 -> bn2 ->
  prelu -> conv2 (stride) -> bn3 (+ downsample); head bn2 -> flatten -> dropout -> fc -> features, a BatchNorm1d
  whose weight is fixed at 1).
- `ResNet`: torchvision's resnet50 layout (v1.5 Bottleneck, stride on the 3x3 conv) with an `embedding_dim`-way fc.
- `PASN`: the whole network of paper Fig. 1 (DLN prior f_expr - f_id and the streaming / parallel heads of
  `pasn_jax/models/streaming.py`), for the inference and training-step comparisons; `heads_to_flax` gives its
  heads' weights in our parameter tree, so the benchmark can check both compute the same function before timing
  them, and `pasn_loss` is the paper's total loss (eq. 1-7) on a fully labelled batch.
"""

import torch
from torch import nn

IRESNET_LAYERS = {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3),
                  "iresnet100": (3, 13, 30, 3)}
RESNET_LAYERS = {"resnet50": (3, 4, 6, 3)}
BN_EPS = 1e-5
NUM_AUS, AU_FEATURE_DIM, NUM_EXPRS, NUM_VA, HIDDEN = 12, 16, 7, 2, 64  # streaming.py's sizes


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, downsample: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.conv1 = conv3x3(cin, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = nn.Sequential(conv1x1(cin, planes, stride), nn.BatchNorm2d(planes, eps=BN_EPS)) \
            if downsample else None

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """images [B, 3, S, S] -> embedding [B, embedding_dim]; fc input 8 * width * (S / 16)^2."""

    def __init__(self, layers=IRESNET_LAYERS["iresnet50"], width: int = 64, embedding_dim: int = 512,
                 image_size: int = 112, dropout: float = 0.0):
        super().__init__()
        self.conv1 = conv3x3(3, width)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.prelu = nn.PReLU(width)
        cin = width
        for stage, blocks in enumerate(layers):
            planes = width * 2**stage
            self.add_module(f"layer{stage + 1}", nn.Sequential(*[
                IBasicBlock(cin if b == 0 else planes, planes, 2 if b == 0 else 1, downsample=b == 0)
                for b in range(blocks)]))
            cin = planes
        self.bn2 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * (image_size // 16) ** 2, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        self.num_stages = len(layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        x = torch.flatten(self.bn2(x), 1)  # (C, H, W) order
        return self.features(self.fc(self.dropout(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: bool):
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(conv1x1(cin, planes * self.expansion, stride),
                                        nn.BatchNorm2d(planes * self.expansion, eps=BN_EPS)) if downsample else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """images [B, 3, S, S] -> embedding [B, embedding_dim] (torchvision resnet50 layout, any S >= 32)."""

    def __init__(self, layers=RESNET_LAYERS["resnet50"], width: int = 64, embedding_dim: int = 512,
                 image_size: int = 112, dropout: float = 0.0):
        super().__init__()
        del image_size  # global average pooling: any size
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = width
        for stage, blocks in enumerate(layers):
            planes = width * 2**stage
            stride = 1 if stage == 0 else 2
            self.add_module(f"layer{stage + 1}", nn.Sequential(*[
                Bottleneck(cin if b == 0 else planes * 4, planes, stride if b == 0 else 1, downsample=b == 0)
                for b in range(blocks)]))
            cin = planes * 4
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, embedding_dim)
        self.num_stages = len(layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return self.fc(self.dropout(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)))


def build_tower(backbone: str, width: int = 64, layers=None, embedding_dim: int = 512, image_size: int = 112,
                dropout: float = 0.0) -> nn.Module:
    """IResNet or ResNet by our config's backbone name ('iresnet18/34/50/100', 'resnet50')."""
    if backbone in IRESNET_LAYERS:
        return IResNet(layers or IRESNET_LAYERS[backbone], width, embedding_dim, image_size, dropout)
    if backbone in RESNET_LAYERS:
        return ResNet(layers or RESNET_LAYERS[backbone], width, embedding_dim, image_size, dropout)
    raise ValueError(f"backbone: expected one of {sorted(IRESNET_LAYERS) + sorted(RESNET_LAYERS)}, got {backbone!r}")


class PerAUDense(nn.Module):
    """[B, 12, d_in] -> [B, 12, out], one weight matrix per AU (kernel [12, d_in, out] as in streaming.py)."""

    def __init__(self, d_in: int, out: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(NUM_AUS, d_in, out) / d_in**0.5)
        self.bias = nn.Parameter(torch.zeros(NUM_AUS, out))

    def forward(self, x):
        return torch.einsum("bai,aio->bao", x, self.kernel) + self.bias


def mlp(sizes, final_activation: bool) -> nn.Sequential:
    """Linear layers sizes[0] -> sizes[1] -> ... with tanh-GELU (flax's nn.gelu) between them."""
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.GELU(approximate="tanh"))
    return nn.Sequential(*layers)


class Heads(nn.Module):
    """streaming.py's StreamingHeads (streaming=True) or ParallelHeads: Emb [B, E] -> au, expr, va."""

    def __init__(self, embedding_dim: int = 512, streaming: bool = True):
        super().__init__()
        self.streaming = streaming
        au_flat = NUM_AUS * AU_FEATURE_DIM
        self.au_extractor = mlp((embedding_dim, au_flat), True)
        self.expr_extractor = mlp((embedding_dim, HIDDEN), True)
        self.va_extractor = mlp((embedding_dim, HIDDEN), True)
        self.au_predictor = nn.ModuleList([PerAUDense(AU_FEATURE_DIM, AU_FEATURE_DIM), PerAUDense(AU_FEATURE_DIM, 1)])
        joint = 2 * HIDDEN if streaming else HIDDEN
        if streaming:
            self.au_to_expr = mlp((au_flat, HIDDEN, HIDDEN), True)
            self.au_expr_to_va = mlp((au_flat + 2 * HIDDEN, HIDDEN, HIDDEN), True)
        self.expr_predictor = mlp((joint, HIDDEN, NUM_EXPRS), False)
        self.va_predictor = mlp((joint, HIDDEN, NUM_VA), False)
        self.gelu = nn.GELU(approximate="tanh")

    def forward(self, emb):
        au_flat = self.au_extractor(emb)  # [B, 192]
        au_feature = au_flat.reshape(-1, NUM_AUS, AU_FEATURE_DIM)
        au = self.au_predictor[1](self.gelu(self.au_predictor[0](au_feature)))[..., 0]
        expr_joint, va_joint = self.expr_extractor(emb), self.va_extractor(emb)
        if self.streaming:
            expr_joint = torch.cat([expr_joint, self.au_to_expr(au_flat)], dim=-1)  # [B, 128]
            va_joint = torch.cat([va_joint, self.au_expr_to_va(torch.cat([au_flat, expr_joint], dim=-1))], dim=-1)
        return {"au": au, "expr": self.expr_predictor(expr_joint), "va": torch.tanh(self.va_predictor(va_joint))}


class PASN(nn.Module):
    """images [B, 3, S, S] -> {'au', 'expr', 'va'}; prior: Emb = f_expr(x) - f_id(x) with f_id frozen in eval mode."""

    def __init__(self, backbone: str = "iresnet50", width: int = 64, layers=None, embedding_dim: int = 512,
                 image_size: int = 112, prior: bool = True, streaming: bool = True):
        super().__init__()
        tower = lambda: build_tower(backbone, width, layers, embedding_dim, image_size)
        self.prior = prior
        if prior:
            self.f_expr, self.f_id = tower(), tower()
            self.f_id.requires_grad_(False)
        else:
            self.backbone = tower()
        self.heads = Heads(embedding_dim, streaming)

    def forward(self, x):
        if self.prior:
            self.f_id.eval()
            with torch.no_grad():
                identity = self.f_id(x)
            emb = self.f_expr(x) - identity
        else:
            emb = self.backbone(x)
        return self.heads(emb)

    def tower(self, name: str) -> nn.Module:
        """'f_expr' / 'f_id' / 'backbone', the names of pasn_jax.models.towers.TOWER_PATHS."""
        return getattr(self, name)


def _dense(linear: nn.Linear) -> dict:
    return {"kernel": linear.weight.detach().cpu().numpy().T, "bias": linear.bias.detach().cpu().numpy()}


def _mlp(sequential: nn.Sequential) -> dict:
    linears = [m for m in sequential if isinstance(m, nn.Linear)]
    return {f"dense{i}": _dense(linear) for i, linear in enumerate(linears)}


def heads_to_flax(heads: Heads) -> dict:
    """The heads' weights as our params['heads'] tree (numpy), for checking that both networks agree."""
    names = ["au_extractor", "expr_extractor", "va_extractor", "expr_predictor", "va_predictor"]
    if heads.streaming:
        names += ["au_to_expr", "au_expr_to_va"]
    tree = {name: _mlp(getattr(heads, name)) for name in names}
    tree["au_predictor"] = {f"dense{i}": {"kernel": layer.kernel.detach().cpu().numpy(),
                                           "bias": layer.bias.detach().cpu().numpy()}
                            for i, layer in enumerate(heads.au_predictor)}
    return tree


def pasn_loss(outputs: dict, au, expr, va, smoothing: float = 0.9):
    """The paper's total loss (eq. 7) of a batch where every frame has every label: AU circle loss (eq. 1) + BCE
    (eq. 2), label-smoothed cross entropy (eq. 4), 2 - CCC_V - CCC_A (eq. 5-6); as pasn_jax/losses.py computes it."""
    scores = outputs["au"].float()
    positive = au.bool()
    zeros = scores.new_zeros(scores.shape[0], 1)
    inf = torch.tensor(float("inf"), dtype=scores.dtype)
    neg = torch.cat([zeros, torch.where(positive, -inf, scores)], dim=1)
    pos = torch.cat([zeros, torch.where(positive, -scores, -inf)], dim=1)
    circle = torch.logsumexp(neg, dim=1) + torch.logsumexp(pos, dim=1)
    bce = nn.functional.binary_cross_entropy_with_logits(scores, au.float(), reduction="none").mean(dim=1)
    target = nn.functional.one_hot(expr, NUM_EXPRS).float()
    target = target * smoothing + (1 - target) * (1 - smoothing) / (NUM_EXPRS - 1)
    expr_loss = -(target * torch.log_softmax(outputs["expr"].float(), dim=1)).sum(dim=1).mean()

    def ccc(x, y):
        dx, dy = x - x.mean(), y - y.mean()
        return 2 * (dx * dy).mean() / (dx.square().mean() + dy.square().mean() + (x.mean() - y.mean()) ** 2 + 1e-8)

    pred = outputs["va"].float()
    va_loss = 2 - ccc(pred[:, 0], va[:, 0]) - ccc(pred[:, 1], va[:, 1])
    return (circle + bce).mean() + expr_loss + va_loss
