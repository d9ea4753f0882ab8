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

With --export DIR, cases named onnx:KIND are exported to ONNX (opset 17, random weights, seed 0)
for the ONNX Runtime peers, and PyTorch's own forward is timed and saved as their reference:
  onnx:matmul:M:N:K  x[M,K] @ W[K,N]
  onnx:conv3x3       Conv2d 64→64 3×3 pad 1 on 1×64×128×128
  onnx:softmax:D:..  softmax along the last axis of a tensor of shape D×... (past 128 MiB: the
                     binding limit of WebGPU adapters)
  onnx:resnet_fwd:B:S  ResNet-50-ADL forward (eval) from the 4-channel input to the pooled
                     features (the FFT high-pass channel is an input: torch 1.13 cannot export
                     fft2; the one-logit fc is left out so the check covers 2048 numbers a sample)
  onnx:sam_encoder   SAM ViT-B image encoder @1024, exported twice: straight, and with attention
                     computed one head at a time (scores [1, 4096, 4096] per head, under 128 MiB)
Each writes DIR/<id>*.onnx, DIR/<id>.in.bin and DIR/<id>.out.bin (float32, little-endian) and its
row carries {"models": [{"variant", "onnx"}], "input": {"name", "shape", "file"},
"output": {"shape", "file"}}.
Prints one JSON line: {"torch": version, "threads": n, "rows": [{"case", "ms", "all"} | {"case", "error"}]}.
"""
import json
import os
import sys
import time
from functools import partial

if any(a in ("-h", "--help") for a in sys.argv[1:]):  # before the heavy imports
    print('usage: /usr/bin/python3 bench/peers/torch_models.py [--threads N] [--runs N] [--sam-code DIR] [--export DIR] CASE...')
    print(__doc__)
    sys.exit(0)

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
# ONNX export for the ONNX Runtime peers


class MatMul(nn.Module):
    def __init__(self, k, n):
        super().__init__()
        self.w = nn.Parameter(torch.rand(k, n) * 2 - 1)

    def forward(self, x):
        return x @ self.w


class ResNetBody(nn.Module):
    """ResNet-50-ADL after the high-pass channel: 4-channel input, eval (ADL is the identity).
    Returns the pooled features [B, 2048] (the one-logit fc left out: the output check then covers
    4096 numbers instead of two)."""

    def __init__(self):
        super().__init__()
        self.m = ResNetAdl().eval()

    def forward(self, x4):
        m = self.m
        x = m.maxpool(m.relu(m.bn1(m.conv1(x4))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return m.avgpool(x).flatten(1)


class Softmax(nn.Module):
    def forward(self, x):
        return x.softmax(dim=-1)


def per_head_forward(self, x):
    """Attention.forward computing scores, bias and softmax one head at a time."""
    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q_all, k_all, v_all = qkv.unbind(0)  # (B, nHead, HW, C)
    outs = []
    for h in range(self.num_heads):
        q, k, v = q_all[:, h], k_all[:, h], v_all[:, h]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            attn = self._rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        outs.append(attn.softmax(dim=-1) @ v)
    x = torch.stack(outs, 1).view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(x)


def onnx_models(kind, args, code_dir):
    """(module, input, [(variant, patch)]) for an export kind; patch(True/False) switches a variant."""
    torch.manual_seed(0)
    none = [("", lambda on: None)]
    if kind == "matmul":
        m, n, k = (int(a) for a in args)
        return MatMul(k, n), torch.rand(m, k) * 2 - 1, none
    if kind == "softmax":
        return Softmax(), torch.randn(*(int(a) for a in args)) * 4, none
    if kind == "conv3x3":
        return nn.Conv2d(64, 64, 3, padding=1, bias=False), torch.rand(1, 64, 128, 128) * 2 - 1, none
    if kind == "resnet_fwd":
        b, s = int(args[0]), int(args[1])
        return ResNetBody().eval(), torch.rand(b, 4, s, s), none
    if kind == "sam_encoder":
        sm = sam_modeling(code_dir)
        enc = build_sam_vit_b(sm).image_encoder.eval()
        for name, p in enc.named_parameters():
            if "rel_pos" in name:  # zero-initialised: give the bias something to do
                nn.init.normal_(p, 0, 0.02)
        attn_cls = sm.image_encoder.Attention
        plain = attn_cls.forward

        def per_head(on):
            attn_cls._rel_pos = staticmethod(sm.image_encoder.add_decomposed_rel_pos)
            attn_cls.forward = per_head_forward if on else plain

        return enc, torch.randn(1, 3, 1024, 1024), [("", lambda on: None), ("per-head", per_head)]
    raise ValueError(f"unknown export kind {kind}")


def peak_rss_mib():
    """This process's peak resident memory (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def export_case(case, out_dir, runs, code_dir):
    kind, *args = case.split(":")[1:]
    ident = "-".join([kind, *args])
    model, x, variants = onnx_models(kind, args, code_dir)
    model.eval()
    with torch.no_grad():
        y = model(x)  # warm-up and reference
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    st = sorted(times)
    mid = len(st) // 2
    med = st[mid] if len(st) % 2 else (st[mid - 1] + st[mid]) / 2
    inp = os.path.join(out_dir, f"{ident}.in.bin")
    outp = os.path.join(out_dir, f"{ident}.out.bin")
    x.contiguous().numpy().astype("<f4").tofile(inp)
    y.contiguous().numpy().astype("<f4").tofile(outp)
    models = []
    for variant, patch in variants:
        path = os.path.join(out_dir, f"{ident}{'-' + variant if variant else ''}.onnx")
        patch(True)
        try:
            t0 = time.perf_counter()
            # The trace runs the model once: without no_grad autograd keeps every intermediate for
            # a backward that never comes (the encoder's attention probabilities: GBs).
            with torch.no_grad():
                torch.onnx.export(model, x, path, opset_version=17, input_names=["x"], output_names=["y"])
            print(f"exported {path} in {time.perf_counter() - t0:.0f} s (peak RSS so far {peak_rss_mib():.0f} MiB)",
                  file=sys.stderr)
        finally:
            patch(False)
        models.append({"variant": variant, "onnx": path})
    print(f"torch {case}: {med:.0f} ms (runs {[round(t) for t in times]})", file=sys.stderr)
    return {
        "case": case, "ms": med, "all": times, "models": models,
        "input": {"name": "x", "shape": list(x.shape), "file": inp},
        "output": {"shape": list(y.shape), "file": outp},
    }


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
    threads, runs, code_dir, export_dir = 2, 3, "/tmp/epsam_code", None
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
        elif a == "--export":
            export_dir = argv[i + 1]; i += 2
        else:
            cases.append(a); i += 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for c in cases:
        try:
            if c.startswith("onnx:"):
                if export_dir is None:
                    raise ValueError("onnx: cases need --export DIR")
                rows.append(export_case(c, export_dir, runs, code_dir))
                continue
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
