"""A second decoder of format 6 blocks, written from docs/format.md ("Block coding (version 6)") alone:
plain Python, one voxel at a time, nothing shared with the native engine but the logistic tables of
the mixing coder (which the format fixes as literal tables in voxcodec/core/native/logistic.h).

It is slow (tens of microseconds a voxel): tests/test_reference.py runs it on small blocks and golden
streams, against the native encoder's bytes.  ``decode(payload, params, d, h, w, lo, hi, centre,
shift)`` returns the voxels as nested lists, or raises :class:`Err`.
"""
import math
import re
from pathlib import Path

_SRC = (Path(__file__).resolve().parents[1] / "voxcodec" / "core" / "native" / "logistic.h").read_text()


def _tab(name):
    m = re.search(name + r"\[(\d+)\] = \{(.*?)\};", _SRC, re.S)
    return [int(v) for v in m.group(2).replace("\n", " ").split(",") if v.strip()]


SQUASH = _tab("SQUASH")
STRETCH = _tab("STRETCH")
assert len(SQUASH) == 4095 and len(STRETCH) == 4096


def key(o):
    return (o[0] * o[0] + o[1] * o[1], o[0], o[1])


CAUSAL = sorted([(dy, dx) for dy in range(-6, 1) for dx in range(-6, 7) if dy < 0 or dx < 0], key=key)[:40]
PREV = sorted([(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)], key=key)
PREV2 = sorted([(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)], key=key)
CASC = [(0, 0, -1), (0, -1, 0), (0, -1, -1), (0, -1, 1), (0, 0, -2), (0, -2, 0), (1, 0, 0), (0, -2, 1)]


def eqtab(e):
    q = 0
    while e > 1 and q < 23:
        e = (e * 181) >> 8
        q += 1
    return q


RECIP = [131072 // (2 * i + 3) for i in range(1024)]


class Err(Exception):
    pass


class Dec:
    def __init__(self, buf):
        self.buf, self.pos, self.x = buf, 0, 0

    def byte(self):
        b = self.buf[self.pos] if self.pos < len(self.buf) else 0
        self.pos += 1
        return b

    def start(self):
        self.x = sum(self.byte() << (8 * k) for k in range(4))
        if self.x < 65536:
            raise Err('TAIL start')

    def end(self):
        if self.x != 65536:
            raise Err('TAIL end')

    def norm(self):
        if self.x < 65536:
            lo = self.byte()
            hi = self.byte()
            self.x = (self.x << 16) | lo | (hi << 8)

    def raw(self, n):
        v = 0
        while n > 0:
            k = min(16, n)
            n -= k
            v = (v << k) | (self.x & ((1 << k) - 1))
            self.x >>= k
            self.norm()
        return v

    def bit(self, p1):
        slot, q = self.x & 4095, self.x >> 12
        if slot < p1:
            self.x = p1 * q + slot
            b = 1
        else:
            self.x = (4096 - p1) * q + slot - p1
            b = 0
        self.norm()
        return b


def bits_for(n):
    b = 1
    while (1 << b) < n:
        b += 1
    return b


def token_of(u):
    if u < 16:
        return u, 0
    n = u.bit_length() - 1
    return 16 + ((n - 4) << 3) + ((u >> (n - 3)) & 7), n - 3


class Tab:
    def __init__(self, ntok):
        self.ntok = ntok
        self.cnt = [1] * ntok
        self.total = ntok
        self.seen = 0
        self.freeze()

    def freeze(self):
        f = [max(1, (c << 15) // self.total) for c in self.cnt]
        big = max(range(self.ntok), key=lambda s: (f[s], -s))
        f[big] += 32768 - sum(f)
        self.f = f
        self.cum = [0]
        for v in f:
            self.cum.append(self.cum[-1] + v)
        self.left = min(max(64, self.seen), 4096)

    def update(self, s):
        self.cnt[s] += 32
        self.total += 32
        self.seen += 1
        if self.total > 65536:
            self.cnt = [(c + 1) >> 1 for c in self.cnt]
            self.total = sum(self.cnt)
        self.left -= 1
        if self.left == 0:
            self.freeze()


def dotd(a, b, m):
    s = [0.0, 0.0, 0.0, 0.0]
    for k in range(m):
        s[k % 4] += a[k] * b[k]
    return (s[0] + s[1]) + (s[2] + s[3])


class Ols:
    def __init__(self, n):
        self.n = n
        self.R = [[0.0] * n for _ in range(n)]
        self.b = [0.0] * n
        self.w = [0] * n
        self.run = []  # (regressors, target)

    def fold(self, forget, ridge):
        n = self.n
        A = [[0] * n for _ in range(n)]
        bA = [0] * n
        for x, t in self.run:
            for i in range(n):
                for j in range(i + 1):
                    A[i][j] += x[i] * x[j]
                bA[i] += x[i] * t
        self.run = []
        kf = 2.0 ** -forget
        for i in range(n):
            for j in range(i + 1):
                self.R[i][j] = (self.R[i][j] - self.R[i][j] * kf) + float(A[i][j])
            self.b[i] = (self.b[i] - self.b[i] * kf) + float(bA[i])
        tr = 0.0
        for i in range(n):
            tr += self.R[i][i]
        reg = (tr / n + 1.0) * 2.0 ** -ridge
        L = [[0.0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1):
                L[i][j] = self.R[i][j]
            L[i][i] += reg
        for j in range(n):
            dd = L[j][j] - dotd(L[j], L[j], j)
            if not dd > 0.0:
                return
            dd = math.sqrt(dd)
            L[j][j] = dd
            inv = 1.0 / dd
            for i in range(j + 1, n):
                L[i][j] = (L[i][j] - dotd(L[i], L[j], j)) * inv
        y = [0.0] * n
        for i in range(n):
            y[i] = (self.b[i] - dotd(L[i], y, i)) / L[i][i]
        for i in range(n - 1, -1, -1):
            xi = y[i] / L[i][i]
            y[i] = xi
            for k in range(i):
                y[k] -= L[i][k] * xi
        for i in range(n):
            v = y[i] * 4096.0 + 0.5
            q = math.floor(v) if v == v and abs(v) != math.inf else v
            if not q > -32767.0:
                q = -32767.0
            if not q < 32767.0:
                q = 32767.0
            self.w[i] = int(q)


def sgn3(v):
    return 2 if v > 0 else 0 if v < 0 else 1


def qsig(v):
    a = abs(v)
    q = 0 if a == 0 else 1 if a < 2 else 2 if a < 4 else 3 if a < 8 else 4 if a < 16 else 5 if a < 32 else 6
    return 7 - q if v < 0 else 7 + q


def decode(payload, params, d, h, w, lo, hi, centre, shift):
    p = params
    assert p[0] == 1
    coder, nc, npv, np2, ilog, forget, ridge, blog, casc, inputs, mant, lr, limlog, sparse = p[1:15]
    I = 1 << ilog
    rc = Dec(payload)
    out = [[[0] * w for _ in range(h)] for _ in range(d)]
    V = {}  # z -> plane
    E = {}
    S = {}

    def get(planes, z, y, x):
        if z < 0 or y < 0 or y >= h or x < 0 or x >= w:
            return 0
        return planes[z][y][x]

    regs = [(0, o) for o in CAUSAL[:nc]] + [(1, o) for o in PREV[:npv]] + [(2, o) for o in PREV2[:np2]]
    n = len(regs)
    nb = ((w + (1 << blog) - 1) >> blog) if blog else 1
    bands = [Ols(n) for _ in range(nb)]
    for o in bands:
        if nc >= 2:
            o.w[0] = o.w[1] = 2048
        elif nc == 1 or npv:
            o.w[0] = 4096
    cs = Ols(casc) if casc else None
    umax = 2 * (hi - lo)
    ntok = max(16, token_of(umax)[0] + 1)
    tabs = [Tab(ntok) for _ in range(41)] if coder == 1 else None
    if coder == 2:
        sizes = [1, 41, 648, 8, 120, 128]
        M = [[1 << 31] * (64 * sizes[i]) for i in range(inputs)]
        MW = [[65536 // (inputs + 1)] * inputs for _ in range(64 * 8)]
        limit = (1 << limlog) - 1
    score = [0] * 16
    span = hi - lo + 1
    chunk_rows = 1 if w >= 65536 else 65536 // w

    def mix(base, node, sel):
        ws = MW[node * 8 + sel]
        st = [STRETCH[M[i][base[i] * 64 + node] >> 20] for i in range(inputs)]
        dot = sum(ws[i] * st[i] for i in range(inputs))
        x = max(-2047, min(2047, dot >> 16))
        pr = SQUASH[x + 2047]
        bit = rc.bit(pr)
        err = ((bit << 12) - pr) * lr
        for i in range(inputs):
            nw = ws[i] + ((st[i] * err + 0x8000) >> 16)
            ws[i] = max(-(1 << 24), min(1 << 24, nw))
            v = M[i][base[i] * 64 + node]
            cnt, pp = v & 1023, v >> 10
            tgt = (1 << 22) - 1 if bit else 0
            npp = pp + (((tgt - pp) * RECIP[cnt]) >> 16)
            M[i][base[i] * 64 + node] = (npp << 10) | (cnt + 1 if cnt < limit else cnt)
        return bit

    for z in range(d):
        V[z] = [[0] * w for _ in range(h)]
        E[z] = [[0] * w for _ in range(h)]
        S[z] = [[0] * w for _ in range(h)]
        rc.start()
        kind = rc.raw(2)
        vals = None
        if kind == 2:
            v = lo + rc.raw(bits_for(span))
            if v > hi:
                raise Err('SLICE')
            for y in range(h):
                for x in range(w):
                    out[z][y][x] = v
                    V[z][y][x] = (v - centre) >> shift
            rc.end()
            continue
        if kind == 3:
            cnt = rc.raw(bits_for(span + 1))
            if cnt < 2 or cnt > hi - lo or cnt > h * w:
                raise Err('SLICE')
            vals = []
            for i in range(cnt):
                v = lo + rc.raw(bits_for(span))
                if v > hi or (vals and v <= vals[-1]):
                    raise Err('SLICE')
                vals.append(v)
        elif kind == 1:
            if 4 * h * w <= span:
                raise Err('SLICE')
            vals = [lo + k for k in range(span) if rc.raw(1)]
            if len(vals) < 2:
                raise Err('SLICE')
        if vals is not None:
            if len(vals) >= vals[-1] - vals[0] + 1:
                raise Err('SLICE')

            def nearest(val):
                best = 0
                for k, pv in enumerate(vals):
                    if abs(pv - val) < abs(vals[best] - val):
                        best = k
                return best
        for y in range(h):
            feeds = (y & ((1 << sparse) - 1)) == 0
            for x in range(w):
                val = lambda yy, xx: out[z][yy][xx]
                flat, edge, P = False, 0, 0
                if y > 0:
                    vN = val(y - 1, x)
                    vW = val(y, x - 1) if x > 0 else 0
                    vNW = val(y - 1, x - 1) if x > 0 else 0
                    vNE = val(y - 1, x + 1) if x + 1 < w else vN
                    if x > 0:
                        flat = vW == vN == vNW == vNE
                        P = vW
                        edge = 0 if flat else (vW == lo) | (vNW == lo) << 1 | (vN == lo) << 2 | (vNE == lo) << 3
                    elif w > 1:
                        flat = vN == vNE
                        P = vN
                elif x > 1:
                    flat = val(y, x - 1) == val(y, x - 2)
                    P = val(y, x - 1)
                band = x >> blog if blog else 0
                o = bands[band]
                acc = 0
                Pf = 0
                xs = [get(V, z - k, y + dy, x + dx) for k, (dy, dx) in regs]
                ss = [get(S, z - pz, y + dy, x + dx) for pz, dy, dx in CASC[:casc]]
                if not flat:
                    acc = sum(o.w[i] * xs[i] for i in range(n))
                    pfull = acc + (sum(cs.w[j] * ss[j] for j in range(casc)) if casc else 0)
                    Pf = centre + (((pfull << shift) + 2048) >> 12)
                    Pf = max(lo, min(hi, Pf))
                    P = lo if (edge and score[edge] >= 0) else Pf
                if flat:
                    eq, eqc = 24, 6
                elif edge:
                    eq, eqc = 25 + edge, 7
                else:
                    e = (2 * get(E, z, y - 1, x) + get(E, z, y - 1, x - 1) + get(E, z, y - 1, x + 1) + get(E, z, y - 2, x)
                         + 2 * get(E, z - 1, y, x) + 2 * get(E, z, y, x - 1) + get(E, z, y, x - 2))
                    eq = eqtab(e)
                    eqc = eq >> 2
                if vals is not None:
                    Pr = nearest(P)
                    rmin, rmax = -Pr, len(vals) - 1 - Pr
                else:
                    rmin, rmax = lo - P, hi - P
                if coder == 1:
                    t = tabs[eq]
                    slot = rc.x & 32767
                    tok = next(s for s in range(ntok) if t.cum[s] <= slot < t.cum[s + 1])
                    rc.x = t.f[tok] * (rc.x >> 15) + slot - t.cum[tok]
                    rc.norm()
                    if tok < 16:
                        u = tok
                    else:
                        nraw = ((tok - 16) >> 3) + 1
                        base = (8 + ((tok - 16) & 7)) << nraw
                        u = base | rc.raw(nraw)
                    r = -((u + 1) >> 1) if u & 1 else u >> 1
                    if r < rmin or r > rmax:
                        raise Err('RANGE')
                    t.update(tok)
                else:
                    spat = (sgn3(get(S, z, y, x - 1)) * 27 + sgn3(get(S, z, y - 1, x)) * 9 + sgn3(get(S, z, y - 1, x - 1)) * 3
                            + sgn3(get(S, z, y - 1, x + 1)))
                    iv = ((P - lo) * 16) // (hi - lo + 1)
                    base = [0, eq, eqc * 81 + spat, eqc, qsig(get(S, z - 1, y, x)) * 8 + eqc, iv * 8 + eqc]
                    if mix(base, 0, eqc):
                        r = 0
                    else:
                        if rmin < 0 and rmax > 0:
                            pos = mix(base, 1, eqc)
                        else:
                            pos = 1 if rmax > 0 else 0
                        maxm = rmax if pos else -rmin
                        kmax = maxm.bit_length() - 1
                        j = 0
                        while j < kmax:
                            if not mix(base, 2 + min(j, 15), eqc):
                                break
                            j += 1
                        k = j
                        mm = 1
                        for i in range(k - 1, -1, -1):
                            if i >= k - mant:
                                node = 18 + min(k, 16) if i == k - 1 else 35 + min(k, 15) if i == k - 2 else 51 + min(i, 12)
                                b = mix(base, node, eqc)
                            else:
                                b = rc.raw(1)
                            mm = 2 * mm + b
                        if mm > maxm:
                            raise Err('RANGE')
                        r = mm if pos else -mm
                v = vals[Pr + r] if vals is not None else P + r
                out[z][y][x] = v
                if edge:
                    dl, df = v - lo, abs(v - Pf)
                    score[edge] += 1 if dl < df else -1 if dl > df else 0
                    score[edge] = max(-64, min(64, score[edge]))
                tv = (v - centre) >> shift
                V[z][y][x] = tv
                rs = r if vals is not None else r >> shift
                E[z][y][x] = min(abs(rs), 255)
                S[z][y][x] = max(-127, min(127, rs))
                if not flat and not edge and feeds:
                    o.run.append((xs, tv))
                    if casc:
                        pm = max(-128, min(127, (acc + 2048) >> 12))
                        cs.run.append((ss, tv - pm))
                    if len(o.run) == I:
                        o.fold(forget, ridge)
                    if casc and len(cs.run) == I:
                        cs.fold(forget, ridge)
            if (y + 1) % chunk_rows == 0 or y + 1 == h:
                rc.end()
                if y + 1 < h:
                    rc.start()
        for o in bands:
            if o.run:
                o.fold(forget, ridge)
        if casc and cs.run:
            cs.fold(forget, ridge)
    if rc.pos != len(payload):
        raise Err('TAIL/EARLY')
    return out
