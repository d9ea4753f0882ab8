"""PyTorch CPU peer for bench/models.ts. Bench only; never used by tests.

Usage: /usr/bin/python3 torch_models.py [--threads 2] [--runs 3] [--sam-code DIR] CASE...
  resnet_train:B:S   ResNet-50-ADL training step (forward, BCE-with-logits, backward, Adam step)
  resnet_fwd:B:S     ResNet-50-ADL forward, eval, no_grad
  sam_encoder        SAM ViT-B image encoder forward at 1024×1024, no_grad
  sam_block_window   one windowed encoder block (blocks[0]) on [1, 64, 64, 768]
  sam_block_global   one global-attention block (blocks[2]) on [1, 64, 64, 768]
  sam_decoder:N      EP-SAM decoder-only step: N positive points, prompt encoder under no_grad,
                     postprocess to 512², sigmoid, dice + IoU loss, backward, Adam step

The ResNet-50-ADL is written here (same architecture as EP-SAM's patch_classifier/resnet_adl.py:
Bottleneck [3, 4, 6, 3], 4 input channels incl. the FFT high-pass channel, ADL after layer3.0 and
layer4.0/layer4.2 (active in training), layer4 stride 1, one logit) because the reference file
imports torchvision/cv2. SAM uses the official modeling code from EP-SAM's
code/segment_anything/modeling, copied to DIR/segment_anything_modeling at run time (--sam-code DIR,
default /tmp/epsam_code; not committed). Timing: wall clock, one warm-up, median of --runs.
Run with OMP_WAIT_POLICY=PASSIVE on a shared machine (bench/models.ts sets it): with OpenMP's
default spin-waiting, 2 threads under load were 25× slower than 1 thread.
Prints one JSON line: {"torch": version, "threads": n, "rows": [{"case", "ms", "all"} | {"case", "error"}]}.
"""
import json
import os
import sys
import time
from functools import partial

sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# ----------------------------------------------------------------------------------------------
# ResNet-50-ADL


def extract_freq_components(x):
    fft = torch.fft.fftshift(torch.fft.fft2(x, norm="forward"))
    W, H = x.shape[-2:]
    cw, ch = W // 2, H // 2
    fft[:, :, cw - 1:cw + 1, ch - 1:ch + 1] = 0
    hi = torch.fft.ifftshift(fft)
    return torch.abs(torch.fft.ifft2(hi, norm="forward").real)


class ADL(nn.Module):
    def __init__(self, rate=0.75, thr=0.8):
        super().__init__()
        self.rate, self.thr = rate, thr

    def forward(self, x):
        if not self.training:
            return x
        att = torch.mean(x, dim=1, keepdim=True)
        imp = torch.sigmoid(att)
        b = att.size(0)
        mx, _ = torch.max(att.view(b, -1), dim=1, keepdim=True)
        drop = (att < (mx * self.thr).view(b, 1, 1, 1)).float()
        r = (torch.rand([]) + self.rate).floor()
        return x.mul((1.0 - r) * imp + r * drop)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        out += identity
        return self.relu(out)


class ResNetAdl(nn.Module):
    ADL_POS = [[], [], [], [0], [0, 2]]

    def __init__(self, layers=(3, 4, 6, 3)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(4, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(64, layers[0], 1, self.ADL_POS[1])
        self.layer2 = self._make(128, layers[1], 2, self.ADL_POS[2])
        self.layer3 = self._make(256, layers[2], 2, self.ADL_POS[3])
        self.layer4 = self._make(512, layers[3], 1, self.ADL_POS[4])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def _make(self, planes, blocks, stride, split):
        ds = None
        if stride != 1 or self.inplanes != planes * 4:
            ds = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, ds)]
        self.inplanes = planes * 4
        for _ in range(1, blocks):
            layers.append(Bottleneck(self.inplanes, planes))
        for pos in reversed(split):
            layers.insert(pos + 1, ADL())
        return nn.Sequential(*layers)

    def forward(self, x):
        hf = extract_freq_components(x).mean(dim=1, keepdim=True)
        x = torch.cat((x, hf), dim=1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def case_resnet_train(b, s):
    m = ResNetAdl().train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.rand(b, 3, s, s)
    y = (torch.arange(b) % 2).float()

    def step():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(m(x).view(b), y)
        loss.backward()
        opt.step()

    return step


def case_resnet_fwd(b, s):
    m = ResNetAdl().eval()
    x = torch.rand(b, 3, s, s)

    def step():
        with torch.no_grad():
            m(x)

    return step


# ----------------------------------------------------------------------------------------------
# SAM (official modeling code)


def sam_modeling(code_dir):
    pkg = os.path.join(code_dir, "segment_anything_modeling")
    if not os.path.isdir(pkg):
        raise RuntimeError(
            f"{pkg} missing: copy EP-SAM's code/segment_anything/modeling there "
            "(git --git-dir <mirror> archive HEAD code/segment_anything/modeling | tar -x ...)"
        )
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    import segment_anything_modeling as sm  # noqa: E402
    return sm


def build_sam_vit_b(sm):
    enc = sm.ImageEncoderViT(
        depth=12, embed_dim=768, img_size=1024, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=12, patch_size=16,
        qkv_bias=True, use_rel_pos=True, global_attn_indexes=[2, 5, 8, 11], window_size=14, out_chans=256,
    )
    pe = sm.PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16)
    dec = sm.MaskDecoder(
        num_multimask_outputs=3,
        transformer=sm.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return sm.Sam(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec,
                  pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


def case_sam_encoder(sm):
    sam = build_sam_vit_b(sm).eval()
    x = torch.randn(1, 3, 1024, 1024)

    def step():
        with torch.no_grad():
            sam.image_encoder(x)

    return step


def case_sam_block(sm, idx):
    sam = build_sam_vit_b(sm).eval()
    blk = sam.image_encoder.blocks[idx]
    x = torch.randn(1, 64, 64, 768)

    def step():
        with torch.no_grad():
            blk(x)

    return step


def dice_loss(p, t, s=1e-3):
    inter = (p * t).sum(dim=(1, 2))
    return (1 - (2 * inter + s) / (p.sum(dim=(1, 2)) + t.sum(dim=(1, 2)) + s)).mean()


def iou_loss(p, t, s=1e-3):
    inter = (p * t).sum(dim=(1, 2))
    union = (p + t).sum(dim=(1, 2)) - inter
    return (1 - (inter + s) / (union + s)).mean()


def case_sam_decoder(sm, n):
    sam = build_sam_vit_b(sm).train()
    for p in list(sam.image_encoder.parameters()) + list(sam.prompt_encoder.parameters()):
        p.requires_grad_(False)
    opt = torch.optim.Adam(sam.mask_decoder.parameters(), lr=1e-5)
    emb = torch.rand(1, 256, 64, 64) * 2 - 1
    coords = torch.rand(1, n, 2) * 1023
    labels = torch.ones(1, n)
    yy, xx = torch.meshgrid(torch.arange(512), torch.arange(512), indexing="ij")
    target = (((xx - 256) ** 2 + (yy - 256) ** 2) < 150 ** 2).float()[None]

    def step():
        opt.zero_grad()
        with torch.no_grad():
            sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low, _ = sam.mask_decoder(
            image_embeddings=emb, image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
        )
        masks = sam.postprocess_masks(low, (1024, 1024), (512, 512))
        probs = torch.sigmoid(masks.squeeze(1))
        loss = dice_loss(probs, target) + iou_loss(probs, target)
        loss.backward()
        opt.step()

    return step


# ----------------------------------------------------------------------------------------------


def make(case, code_dir):
    kind, *args = case.split(":")
    if kind == "resnet_train":
        return case_resnet_train(int(args[0]), int(args[1]))
    if kind == "resnet_fwd":
        return case_resnet_fwd(int(args[0]), int(args[1]))
    sm = sam_modeling(code_dir)
    if kind == "sam_encoder":
        return case_sam_encoder(sm)
    if kind == "sam_block_window":
        return case_sam_block(sm, 0)
    if kind == "sam_block_global":
        return case_sam_block(sm, 2)
    if kind == "sam_decoder":
        return case_sam_decoder(sm, int(args[0]) if args else 50)
    raise ValueError(f"unknown case {case}")


def main():
    argv = sys.argv[1:]
    threads, runs, code_dir = 2, 3, "/tmp/epsam_code"
    cases = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--threads":
            threads = int(argv[i + 1]); i += 2
        elif a == "--runs":
            runs = int(argv[i + 1]); i += 2
        elif a == "--sam-code":
            code_dir = argv[i + 1]; i += 2
        else:
            cases.append(a); i += 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for c in cases:
        try:
            step = make(c, code_dir)
            step()  # warm-up
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                step()
                times.append((time.perf_counter() - t0) * 1e3)
            st = sorted(times)
            m = len(st) // 2
            med = st[m] if len(st) % 2 else (st[m - 1] + st[m]) / 2
            rows.append({"case": c, "ms": med, "all": times})
            print(f"torch {c}: {med:.0f} ms (runs {[round(t) for t in times]})", file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            rows.append({"case": c, "error": f"{type(e).__name__}: {e}"})
            print(f"torch {c}: {type(e).__name__}: {e}", file=sys.stderr)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
