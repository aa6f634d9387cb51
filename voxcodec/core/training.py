"""Quantization-aware training of a block's networks (PyTorch, float32, CPU or GPU).

Floats only train the model.  The forward pass simulates the integer network of
:mod:`voxcodec.core.network` (int8 weights with power-of-two scales, rounded and clamped activations)
with straight-through gradients, so the integer model that is exported is the one that was
optimized.  What the entropy coder sees is always computed by the exact integer inference, never
by this module: training may differ between machines without affecting decodability.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .network import ACT_BITS, IN_BITS, SCALE_MIN, IntNet, ModelConfig, skip_limit

LN2 = math.log(2.0)


def _exponent(w: torch.Tensor, dims, limit: int = 127) -> torch.Tensor:
    """Per-net power-of-two weight exponent: largest e in 1..20 with max|w| * 2^e <= limit."""
    m = w.detach().abs().amax(dim=dims).clamp_min(1e-12)
    return torch.floor(torch.log2(limit / m)).clamp(1, 20)


def _q(w: torch.Tensor, e: torch.Tensor, limit: int = 127) -> torch.Tensor:
    """Straight-through quantization of w with exponent e (broadcast) to integers within +-limit."""
    s = torch.exp2(e)
    q = torch.clamp(torch.round(w * s), -limit, limit) / s
    return w + (q - w).detach()


def _round_ste(x):
    return x + (torch.floor(x + 0.5) - x).detach()


class NetBank(torch.nn.Module):
    """G networks of identical shape trained together with batched matmuls."""

    def __init__(self, n_in: list[int], hidden, seed: int = 0, untrained: bool = False, skip_bits: int = 8):
        super().__init__()
        self.skip_limit = skip_limit(skip_bits)
        g, f = len(n_in), max(max(n_in), 1)
        h1, h2 = hidden
        gen = torch.Generator().manual_seed(seed)
        mask = torch.zeros(g, f)
        for i, n in enumerate(n_in):
            mask[i, :n] = 1
        self.register_buffer("mask", mask)
        self.n_in = list(n_in)

        def rnd(*shape, scale):
            return torch.nn.Parameter(torch.randn(*shape, generator=gen) * scale)

        self.w1 = rnd(g, h1, f, scale=0.3 / math.sqrt(f))
        self.b1 = torch.nn.Parameter(torch.full((g, h1), 0.5))
        self.w2 = rnd(g, h2, h1, scale=0.5 / math.sqrt(h1))
        self.b2 = torch.nn.Parameter(torch.full((g, h2), 0.2))
        self.wmu = rnd(g, h2, scale=0.01)
        self.ws = torch.nn.Parameter(torch.zeros(g, f))
        self.bmu = torch.nn.Parameter(torch.zeros(g))
        self.wsc = rnd(g, h2, scale=0.1)
        self.bsc = torch.nn.Parameter(torch.full((g,), 9.0))
        if untrained:  # a fixed predictor with compressible weights: hidden layers off
            with torch.no_grad():
                for p in (self.w1, self.w2, self.wmu, self.wsc):
                    p.zero_()

    @classmethod
    def from_nets(cls, nets: list[IntNet], hidden) -> "NetBank":
        """A bank holding exactly the integer networks ``nets`` (a prior, to fine-tune from): each
        weight is its integer over 2^e, which :meth:`export` gives back unchanged before training."""
        bank = cls([n.w1.shape[1] for n in nets], hidden, skip_bits=12 if nets and nets[0].ws.dtype == np.int16 else 8)
        with torch.no_grad():
            for i, n in enumerate(nets):
                e1, e2, emu, es, esc = (float(2.0 ** e) for e in n.e)
                f = n.w1.shape[1]
                fmu = 2.0 ** n.fmu
                bank.w1[i].zero_()
                bank.w1[i, :, :f] = torch.from_numpy(n.w1.astype(np.float64) / e1)
                bank.b1[i] = torch.from_numpy(n.b1.astype(np.float64) / (e1 * 2.0 ** IN_BITS))
                bank.w2[i] = torch.from_numpy(n.w2.astype(np.float64) / e2)
                bank.b2[i] = torch.from_numpy(n.b2.astype(np.float64) / (e2 * 2.0 ** ACT_BITS))
                bank.wmu[i] = torch.from_numpy(n.wmu.astype(np.float64) / emu)
                bank.ws[i].zero_()
                bank.ws[i, :f] = torch.from_numpy(n.ws.astype(np.float64) / es)
                bank.bmu[i] = float(n.bmu) / fmu
                bank.wsc[i] = torch.from_numpy(n.wsc.astype(np.float64) / esc)
                bank.bsc[i] = float(n.bsc) / (esc * 2.0 ** ACT_BITS)
        return bank

    def init_skip(self, index: int, weights: dict[int, float]):
        with torch.no_grad():
            for k, v in weights.items():
                self.ws[index, k] = v

    def fit_skip(self, pools: list[tuple[np.ndarray, np.ndarray]], ridge: float = 1e-3):
        """Set each network's linear skip (and output bias) to the least-squares linear predictor of its
        pool ``(features (F, N), target (N,))``: a wide skip is an interpolation filter that plain
        gradient steps from a neighbour average approach slowly."""
        with torch.no_grad():
            for i, (x, y) in enumerate(pools):
                f = x.shape[0]
                if y.size <= 4 * (f + 1):
                    continue
                a = np.concatenate([x.T.astype(np.float64), np.ones((y.size, 1))], 1)
                gram = a.T @ a
                gram[np.diag_indices(f)] += ridge * np.trace(gram) / (f + 1)
                sol = np.linalg.solve(gram, a.T @ y.astype(np.float64))
                self.ws[i].zero_()
                self.ws[i, :f] = torch.from_numpy(sol[:f])
                self.bmu[i] = float(sol[f]) / 2.0 ** IN_BITS

    def exponents(self):
        return (_exponent(self.w1 * self.mask[:, None, :], (1, 2)), _exponent(self.w2, (1, 2)),
                _exponent(self.wmu, (1,)), _exponent(self.ws * self.mask, (1,), self.skip_limit),
                _exponent(self.wsc, (1,)))

    def forward(self, v: torch.Tensor):
        """v: (G, B, F) centred values. Returns mean (G, B) in value units and scale bin t (G, B)."""
        e1, e2, emu, es, esc = self.exponents()
        a = 2.0 ** ACT_BITS
        x = v * (self.mask[:, None, :] / 2.0 ** IN_BITS)
        w1 = _q(self.w1 * self.mask[:, None, :], e1[:, None, None])
        b1 = self._qb(self.b1, (e1 + IN_BITS)[:, None])
        z1 = torch.bmm(x, w1.transpose(1, 2)) + b1[:, None, :]
        a1 = torch.clamp(_round_ste(z1 * a), 0, 127) / a
        z2 = torch.bmm(a1, _q(self.w2, e2[:, None, None]).transpose(1, 2)) + self._qb(self.b2, (e2 + ACT_BITS)[:, None])[:, None, :]
        a2 = torch.clamp(_round_ste(z2 * a), 0, 127) / a
        fmu = torch.maximum(emu + ACT_BITS, es + IN_BITS)
        mu = ((a2 * _q(self.wmu, emu[:, None])[:, None, :]).sum(-1)
              + (x * _q(self.ws * self.mask, es[:, None], self.skip_limit)[:, None, :]).sum(-1)
              + self._qb(self.bmu, fmu)[:, None])
        t = (a2 * _q(self.wsc, esc[:, None])[:, None, :]).sum(-1) + self._qb(self.bsc, esc + ACT_BITS)[:, None]
        return mu * 2.0 ** IN_BITS, t

    @staticmethod
    def _qb(b, e):
        s = torch.exp2(e)
        return b + (torch.round(b * s) / s - b).detach()

    def export(self) -> list[IntNet]:
        """The integer networks, computed exactly as the forward pass quantizes."""
        with torch.no_grad():
            e1, e2, emu, es, esc = (t.to(torch.float64) for t in self.exponents())
            fmu = torch.maximum(emu + ACT_BITS, es + IN_BITS)
            nets = []
            for i, n in enumerate(self.n_in):
                def qw(w, e, limit=127):
                    q = torch.clamp(torch.round(w.double() * 2.0 ** e), -limit, limit).cpu().numpy()
                    return q.astype(np.int8 if limit == 127 else np.int16)

                def qb(b, e):
                    return torch.round(b.double() * 2.0 ** e).cpu().numpy().astype(np.int64)

                nets.append(IntNet(
                    w1=qw(self.w1[i, :, :n], e1[i]), b1=qb(self.b1[i], e1[i] + IN_BITS).astype(np.int32),
                    w2=qw(self.w2[i], e2[i]), b2=qb(self.b2[i], e2[i] + ACT_BITS).astype(np.int32),
                    wmu=qw(self.wmu[i], emu[i]), ws=qw(self.ws[i, :n], es[i], self.skip_limit), bmu=int(qb(self.bmu[i], fmu[i])),
                    wsc=qw(self.wsc[i], esc[i]), bsc=int(qb(self.bsc[i], esc[i] + ACT_BITS)),
                    e=tuple(int(t[i]) for t in (e1, e2, emu, es, esc))))
            for net in nets:
                net.validate()
            return nets


def laplace_bits(r: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, bins: int, quantum: float) -> torch.Tensor:
    """Code length in bits of value r under a discretized Laplace(mu, scale(t)) with step quantum."""
    b = SCALE_MIN * torch.exp(torch.clamp(t, 0, bins - 1) * (LN2 / 2))
    d = (r - mu).abs()
    h = quantum / 2
    far = 0.5 * (torch.exp(-(d - h).clamp_min(0) / b) - torch.exp(-(d + h) / b))
    near = 1 - 0.5 * (torch.exp(-(h - d).clamp_min(0) / b) + torch.exp(-(h + d) / b))
    p = torch.where(d >= h, far, near)
    return -torch.log2(p.clamp_min(1e-12))


def fit(bank: NetBank, pools: list[tuple[np.ndarray, np.ndarray]], config: ModelConfig, steps: int,
        quantum: float, batch: int = 2048, lr: float = 1e-2, seed: int = 0, device: str = "cpu",
        progress=None) -> list[float]:
    """Train ``bank`` on per-net sample pools ``(features (F, N) float32, target (N,) float32)``.

    ``progress(step, steps)`` is called after every step (it must not touch the bank).

    Returns each net's mean code length (bits per sample) over the last tenth of the steps.
    """
    g = len(pools)
    f = bank.mask.shape[1]
    sizes = np.array([max(p[1].size, 1) for p in pools])
    big_x = np.zeros((int(sizes.sum()), f), np.float32)
    big_y = np.zeros(int(sizes.sum()), np.float32)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for i, (x, y) in enumerate(pools):
        if y.size:
            big_x[starts[i]:starts[i] + y.size, :x.shape[0]] = x.T
            big_y[starts[i]:starts[i] + y.size] = y
    bank.to(device)
    tx, ty = torch.from_numpy(big_x).to(device), torch.from_numpy(big_y).to(device)
    t_starts = torch.from_numpy(starts).to(device)[:, None]
    t_sizes = torch.from_numpy(sizes).to(device)[:, None].double()
    weight = torch.from_numpy((np.array([p[1].size for p in pools]) > 0).astype(np.float32)).to(device)
    opt = torch.optim.Adam(bank.parameters(), lr=lr, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    gen = torch.Generator(device=device).manual_seed(seed)
    tail = []
    for step in range(steps):
        u = torch.rand((g, batch), generator=gen, device=device, dtype=torch.float64)
        idx = t_starts + (u * t_sizes).long()
        mu, t = bank(tx[idx])
        bits = laplace_bits(ty[idx], mu, t, config.bins, quantum).mean(1)
        loss = (bits * weight).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= steps - max(steps // 10, 1):
            tail.append(bits.detach())
        if progress is not None:
            progress(step + 1, steps)
    bank.to("cpu")
    if not tail:
        return [float("nan")] * g
    return torch.stack(tail).mean(0).cpu().tolist()
